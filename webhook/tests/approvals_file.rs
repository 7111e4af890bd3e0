//! The approvals file source: loads, edits, a broken document and a missing file.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::APPROVALS;
use webhook::metrics::Metrics;
use webhook::store::ApprovalsStore;

const ONE_APPROVAL: &str = "
approvals:
  - image: mojaloop/central-ledger
    version: v17.0.0
    patch: v17.0.0.1-patch
";

/// Polls `condition` every 10 ms for up to 10 s.
async fn wait_for(description: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {description}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn approval_count(store: &ApprovalsStore) -> usize {
    store.load().approvals().len()
}

#[tokio::test]
async fn file_edits_applied_and_garbage_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.yaml");
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(ApprovalsStore::new(metrics.clone()));
    let poller = tokio::spawn(
        store
            .clone()
            .poll_file(path.clone(), Duration::from_millis(20)),
    );

    // Missing file: not ready.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!store.is_loaded());

    std::fs::write(&path, APPROVALS).unwrap();
    wait_for("first load", || store.is_loaded()).await;
    assert_eq!(approval_count(&store), 3);

    std::fs::write(&path, "approvals: [ {image: unterminated").unwrap();
    wait_for("document error", || {
        metrics
            .encode()
            .contains(r#"approvals_config_errors_total{kind="document"} 1"#)
    })
    .await;
    assert_eq!(
        approval_count(&store),
        3,
        "last good approvals must stay in force"
    );
    assert!(store.is_loaded());

    std::fs::write(&path, ONE_APPROVAL).unwrap();
    wait_for("second document", || approval_count(&store) == 1).await;
    assert!(
        metrics
            .encode()
            .contains("image_patch_webhook_approvals_loaded 1")
    );

    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        approval_count(&store),
        1,
        "a missing file keeps the last good approvals"
    );
    poller.abort();
}

#[tokio::test]
async fn invalid_entry_skipped_and_counted() {
    let metrics = Arc::new(Metrics::new());
    let store = ApprovalsStore::new(metrics.clone());
    let document = format!(
        "{ONE_APPROVAL}  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.5.0\n"
    );

    store.apply_document(&document, "test").unwrap();

    assert_eq!(approval_count(&store), 1);
    assert!(
        metrics
            .encode()
            .contains(r#"approvals_config_errors_total{kind="entry"} 1"#),
        "{}",
        metrics.encode()
    );
}
