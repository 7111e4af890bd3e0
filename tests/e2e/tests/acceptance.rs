//! Acceptance of image-patch-controller on real components: one cluster per Helm
//! major, with the scenarios run in sequence. The two tests take turns through a
//! mutex, because two control planes at once slow a 2-core machine down more
//! than running them one after the other.

use anyhow::{Context, Result};
use e2e::hub::{Helm, Hub};
use e2e::scenarios::{self, Narrator};

mod common;

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn acceptance(helm: Helm) -> Result<()> {
    let mut hub = Hub::start(helm).await.context("the stack starts")?;
    let narrator = Narrator::silent();
    common::install(&mut hub).await.context("scenario 1: install")?;
    scenarios::deploy(&hub, narrator).await.context("scenario 2: deploy")?;
    scenarios::notice(&hub, narrator).await.context("scenario 3: notice")?;
    scenarios::approve_and_upgrade(&hub, narrator).await.context("scenario 4: approve and upgrade")?;
    scenarios::roll_back(&hub, narrator).await.context("scenario 5: roll back")?;
    common::webhook_down(&mut hub).await.context("scenario 6: webhook down")?;
    common::auto_policy(&hub).await.context("scenario 7: auto policy")?;
    common::garbage_approvals(&hub).await.context("scenario 8: garbage approvals")?;
    common::private_registry(&mut hub).await.context("scenario 9: private registry")?;
    hub.shut_down().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_helm3() -> Result<()> {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    acceptance(Helm::V3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_helm4() -> Result<()> {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    acceptance(Helm::V4).await
}
