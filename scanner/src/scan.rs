//! One scan, from configuration to report.
//!
//! ```text
//!  configuration: Slack Secret, approvals ──(missing or unreadable: ScanError::Config)
//!  discovery ─► rows; images with a patch-versioned tag ─► by source repository
//!  registry: one tag list per repository ─► newest patch per image ─► digests
//!  auto policy ─► approvals ─► statuses ─► rollout
//!  state: unannounced patches ─► claim ─► Slack ─► confirm or release
//!  report ─► stdout (by the caller) and ConfigMap image-patch-report
//! ```
//!
//! Only configuration errors and an unreachable API server end a scan with an error.
//! A registry, Slack or state fault is recorded in the report, and the next scan
//! retries what this one could not finish.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::approvals::{CONFIGMAP_KEY as APPROVALS_KEY, CONFIGMAP_NAME as APPROVALS_NAME};
use common::{Approvals, Decision, ImageRef, Mode, Repository};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::Api;

use crate::approve::{self, AutoApproval};
use crate::configmap::ConfigMapStore;
use crate::discovery::{self, NamespaceSelection, WorkloadImage};
use crate::notice::{EntryWorkload, Notice, PatchEntry};
use crate::options::{Options, RolloutMode};
use crate::registry::{Credential, RegistryClient, RegistryConfig, credentials};
use crate::report::{self, NoticeSummary, Report, Row, Status};
use crate::secret::Secret;
use crate::slack::SlackClient;
use crate::state::{PatchKey, StateStore};

/// Registry lookups in flight at once, over all registries. Each registry also has its own, lower cap.
const LOOKUP_CONCURRENCY: usize = 16;

/// A failure that ends a scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The configuration is invalid, and the operator has to fix it. Exit status 2.
    #[error("configuration error: {0}")]
    Config(String),
    /// The API server could not be read. Exit status 1.
    #[error("API server: {0}")]
    Api(#[from] kube::Error),
}

/// One image of a workload with its lookup key.
struct Classified {
    image: WorkloadImage,
    /// The source repository and running tag, for images whose tag is patch-versioned.
    lookup: Option<(Repository, String)>,
}

/// A newer patch found for one or more images.
struct Candidate {
    repository: Repository,
    patch: String,
    digest: Option<String>,
    running_tags: BTreeSet<String>,
    workloads: Vec<EntryWorkload>,
}

/// Runs one scan and returns its report.
pub async fn run(client: kube::Client, options: &Options) -> Result<Report, ScanError> {
    let started = Utc::now();
    let scan_id = format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "scan".into()), started.timestamp_nanos_opt().unwrap_or_default());
    let controller_namespace = options.controller_namespace.as_str();

    let slack_url = if options.dry_run { None } else { Some(read_slack_url(&client, options).await?) };
    let approvals_store = ConfigMapStore::new(client.clone(), controller_namespace, APPROVALS_NAME);
    let approvals_document = approvals_store.read().await?.data.get(APPROVALS_KEY).cloned().unwrap_or_default();
    let (mut approvals, entry_errors) = Approvals::parse(&approvals_document)
        .map_err(|error| ScanError::Config(format!("ConfigMap {controller_namespace}/{APPROVALS_NAME}, key {APPROVALS_KEY}: {error}")))?;
    for error in &entry_errors {
        tracing::warn!(%error, "invalid approval skipped");
    }

    let mut report = Report {
        cluster: options.cluster_name.clone(),
        scanned_at: started,
        dry_run: options.dry_run,
        namespaces: Vec::new(),
        rows: Vec::new(),
        approval_errors: entry_errors.iter().map(ToString::to_string).collect(),
        registry_errors: BTreeMap::new(),
        discovery_errors: BTreeMap::new(),
        auto_approved: Vec::new(),
        rollouts: Vec::new(),
        notice: NoticeSummary::default(),
        errors: Vec::new(),
    };

    let selection = if options.namespaces.is_empty() {
        NamespaceSelection::Selector(options.namespace_selector.clone())
    } else {
        NamespaceSelection::Names(options.namespaces.clone())
    };
    report.namespaces = discovery::select_namespaces(&client, &selection).await?;
    let mut images = Vec::new();
    for namespace in &report.namespaces {
        match discovery::discover_namespace(&client, namespace).await {
            Ok(found) => images.extend(found),
            Err(error) => {
                tracing::warn!(namespace = %namespace, %error, "cannot list workloads");
                report.discovery_errors.insert(namespace.clone(), error.to_string());
            }
        }
    }
    tracing::info!(namespaces = report.namespaces.len(), containers = images.len(), "discovered workloads");

    let classified: Vec<Classified> = images.into_iter().map(|image| classify(image, &approvals)).collect();
    let registry = RegistryClient::new(registry_config(options)).map_err(|error| ScanError::Config(format!("cannot set up the registry client: {error}")))?;
    let credentials = collect_credentials(&client, &classified).await;
    let tags = list_tags(&registry, &classified, &credentials, &mut report).await;
    let mut candidates = find_candidates(&classified, &tags, &approvals);
    resolve_digests(&registry, &mut candidates, &credentials, &mut report).await;

    let auto_approved = auto_approve(&approvals_store, &approvals_document, &mut approvals, &candidates, options, &mut report).await;
    let rows_rolled_out = roll_out(&client, &classified, &approvals, options, &mut report).await;
    report.rows = build_rows(&classified, &tags, &candidates, &approvals, &rows_rolled_out);

    let notice = Notice {
        cluster: options.cluster_name.clone(),
        controller_namespace: controller_namespace.to_string(),
        entries: Vec::new(),
        rollouts: report.rollouts.clone(),
    };
    let state = StateStore::new(client.clone(), controller_namespace);
    report.notice = announce(&state, notice, &candidates, &auto_approved, slack_url, &scan_id, options).await;

    if !options.dry_run {
        let store = ConfigMapStore::new(client.clone(), controller_namespace, report::CONFIGMAP_NAME);
        if let Err(error) = report::store(&store, &report).await {
            tracing::warn!(%error, "cannot store the report");
            report.errors.push(format!("report ConfigMap: {error}"));
        }
    }
    Ok(report)
}

async fn read_slack_url(client: &kube::Client, options: &Options) -> Result<Secret, ScanError> {
    let namespace = &options.controller_namespace;
    let name = &options.slack_secret;
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| ScanError::Config(format!("Secret {namespace}/{name} with the Slack webhook URL does not exist; create it or use --dry-run")))?;
    let key = &options.slack_secret_key;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_string())
        .or_else(|| secret.string_data.as_ref().and_then(|data| data.get(key)).map(|text| text.trim().to_string()))
        .filter(|url| !url.is_empty())
        .ok_or_else(|| ScanError::Config(format!("Secret {namespace}/{name} has no key {key:?} with the Slack webhook URL")))?;
    Ok(Secret::new(value))
}

fn registry_config(options: &Options) -> RegistryConfig {
    RegistryConfig {
        insecure: options.insecure_registries.clone(),
        concurrency: options.registry_concurrency as usize,
        timeout: options.registry_timeout,
        retry: options.registry_retry(),
        page_size: options.tags_page_size,
    }
}

fn classify(image: WorkloadImage, approvals: &Approvals) -> Classified {
    let lookup = ImageRef::parse(&image.image).ok().and_then(|reference| {
        if reference.digest.is_some() {
            return None;
        }
        let tag = reference.tag.clone()?;
        let repository = approvals.source_repository(&reference);
        approvals.scheme_for(&repository).parse(&tag).map(|_| (repository, tag))
    });
    Classified { image, lookup }
}

/// Reads the pull Secrets that the images name, and returns the credentials for each
/// source registry in the order first seen. A Secret that cannot be read is skipped.
async fn collect_credentials(client: &kube::Client, classified: &[Classified]) -> HashMap<Repository, Vec<Credential>> {
    let mut secrets: HashMap<(String, String), BTreeMap<String, Credential>> = HashMap::new();
    let mut by_repository: HashMap<Repository, Vec<Credential>> = HashMap::new();
    for item in classified {
        let Some((repository, _)) = &item.lookup else {
            continue;
        };
        let namespace = &item.image.workload.namespace;
        for name in &item.image.pull_secrets {
            let key = (namespace.clone(), name.clone());
            if !secrets.contains_key(&key) {
                secrets.insert(key.clone(), read_pull_secret(client, namespace, name).await);
            }
            if let Some(credential) = secrets[&key].get(&repository.registry) {
                let list = by_repository.entry(repository.clone()).or_default();
                if !list.contains(credential) {
                    list.push(credential.clone());
                }
            }
        }
    }
    by_repository
}

async fn read_pull_secret(client: &kube::Client, namespace: &str, name: &str) -> BTreeMap<String, Credential> {
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            tracing::warn!(namespace, secret = name, "pull Secret does not exist");
            return BTreeMap::new();
        }
        Err(error) => {
            tracing::warn!(namespace, secret = name, %error, "cannot read pull Secret");
            return BTreeMap::new();
        }
    };
    let Some(document) = secret.data.as_ref().and_then(|data| data.get(".dockerconfigjson")) else {
        tracing::warn!(namespace, secret = name, "pull Secret has no .dockerconfigjson key");
        return BTreeMap::new();
    };
    credentials::parse_docker_config(&document.0).unwrap_or_else(|error| {
        tracing::warn!(namespace, secret = name, %error, "pull Secret cannot be used");
        BTreeMap::new()
    })
}

fn credentials_for<'a>(credentials: &'a HashMap<Repository, Vec<Credential>>, repository: &Repository) -> &'a [Credential] {
    credentials.get(repository).map_or(&[], Vec::as_slice)
}

/// Reads each source repository's tag list once, however many images use it.
async fn list_tags(
    registry: &RegistryClient,
    classified: &[Classified],
    credentials: &HashMap<Repository, Vec<Credential>>,
    report: &mut Report,
) -> HashMap<Repository, Arc<Vec<String>>> {
    let repositories: BTreeSet<&Repository> = classified.iter().filter_map(|item| item.lookup.as_ref().map(|(repository, _)| repository)).collect();
    let results: Vec<_> = futures::stream::iter(repositories)
        .map(|repository| async move { (repository, registry.list_tags(repository, credentials_for(credentials, repository)).await) })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;

    let mut tags = HashMap::new();
    for (repository, result) in results {
        match result {
            Ok(list) => {
                tracing::info!(repository = %repository, tags = list.len(), "read tag list");
                tags.insert(repository.clone(), Arc::new(list));
            }
            Err(error) => {
                tracing::warn!(repository = %repository, %error, "tag list unknown");
                report.registry_errors.insert(repository.to_string(), error.to_string());
            }
        }
    }
    tags
}

/// Groups the newest patch of each image by repository and patch.
fn find_candidates(classified: &[Classified], tags: &HashMap<Repository, Arc<Vec<String>>>, approvals: &Approvals) -> BTreeMap<PatchKey, Candidate> {
    let mut candidates: BTreeMap<PatchKey, Candidate> = BTreeMap::new();
    for item in classified {
        let Some((repository, tag)) = &item.lookup else {
            continue;
        };
        let Some(list) = tags.get(repository) else {
            continue;
        };
        let scheme = approvals.scheme_for(repository);
        let Some((patch, _)) = scheme.newest_patch(tag, list.iter().map(String::as_str)) else {
            continue;
        };
        let key = PatchKey { repository: repository.to_string(), patch: patch.to_string() };
        let candidate = candidates.entry(key).or_insert_with(|| Candidate {
            repository: repository.clone(),
            patch: patch.to_string(),
            digest: None,
            running_tags: BTreeSet::new(),
            workloads: Vec::new(),
        });
        candidate.running_tags.insert(tag.clone());
        candidate.workloads.push(EntryWorkload { workload: item.image.workload.clone(), container: item.image.container.clone(), running_tag: tag.clone() });
    }
    for candidate in candidates.values_mut() {
        candidate.workloads.sort();
    }
    candidates
}

async fn resolve_digests(
    registry: &RegistryClient,
    candidates: &mut BTreeMap<PatchKey, Candidate>,
    credentials: &HashMap<Repository, Vec<Credential>>,
    report: &mut Report,
) {
    let results: Vec<_> = futures::stream::iter(candidates.iter())
        .map(|(key, candidate)| async move {
            let result = registry.manifest_digest(&candidate.repository, &candidate.patch, credentials_for(credentials, &candidate.repository)).await;
            (key.clone(), result)
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;
    for (key, result) in results {
        match result {
            Ok(digest) => candidates.get_mut(&key).expect("results come from the candidates").digest = Some(digest),
            Err(error) => {
                tracing::warn!(repository = %key.repository, patch = %key.patch, %error, "digest unknown");
                report.registry_errors.insert(format!("{}:{}", key.repository, key.patch), format!("digest: {error}"));
            }
        }
    }
}

/// Approves the candidates of repositories whose policy is `auto`. Returns the approved
/// patches with who approved them. A dry run computes the approvals without writing them.
async fn auto_approve(
    store: &ConfigMapStore,
    document: &str,
    approvals: &mut Approvals,
    candidates: &BTreeMap<PatchKey, Candidate>,
    options: &Options,
    report: &mut Report,
) -> BTreeMap<PatchKey, String> {
    let requested: Vec<AutoApproval> = candidates
        .values()
        .filter_map(|candidate| {
            let policy = approvals.policy_for(&candidate.repository).filter(|policy| policy.mode == Mode::Auto)?;
            Some(AutoApproval {
                repository: candidate.repository.clone(),
                version: candidate.running_tags.first().cloned().unwrap_or_default(),
                patch: candidate.patch.clone(),
                digest: candidate.digest.clone(),
                approved_by: format!("{} (policy mode auto for {})", crate::SCANNER_NAME, policy.pattern),
            })
        })
        .collect();
    if requested.is_empty() {
        return BTreeMap::new();
    }

    let outcome = if options.dry_run {
        approve::edit_document(document, approvals, &requested)
            .map_err(approve::ApproveError::from)
            .and_then(|(text, approved)| Ok(approve::Approved { approvals: Approvals::parse(&text)?.0, approved }))
    } else {
        approve::approve(store, &requested).await
    };
    match outcome {
        Ok(approved) => {
            *approvals = approved.approvals;
            report.auto_approved = approved.approved.iter().map(AutoApproval::key).collect();
            approved.approved.into_iter().map(|approval| (approval.key(), approval.approved_by)).collect()
        }
        Err(error) => {
            tracing::warn!(%error, "auto-approval failed; the patches are announced as available");
            report.errors.push(format!("auto-approval: {error}"));
            BTreeMap::new()
        }
    }
}

/// Rolls out approved patches; returns the rows (workload, container) that were changed.
async fn roll_out(
    client: &kube::Client,
    classified: &[Classified],
    approvals: &Approvals,
    options: &Options,
    report: &mut Report,
) -> BTreeSet<(crate::discovery::WorkloadId, String)> {
    if options.rollout == RolloutMode::Off || options.dry_run {
        return BTreeSet::new();
    }
    let images: Vec<WorkloadImage> = classified.iter().map(|item| item.image.clone()).collect();
    let planned = crate::rollout::plan(&images, approvals);
    report.rollouts = crate::rollout::apply(client, &planned, options.rollout).await;

    let succeeded: BTreeSet<_> = report.rollouts.iter().filter(|entry| entry.error.is_none()).map(|entry| entry.workload.clone()).collect();
    planned
        .iter()
        .filter(|rollout| succeeded.contains(&rollout.workload))
        .flat_map(|rollout| rollout.changes.iter().map(|change| (rollout.workload.clone(), change.container.clone())))
        .collect()
}

fn build_rows(
    classified: &[Classified],
    tags: &HashMap<Repository, Arc<Vec<String>>>,
    candidates: &BTreeMap<PatchKey, Candidate>,
    approvals: &Approvals,
    rolled_out: &BTreeSet<(crate::discovery::WorkloadId, String)>,
) -> Vec<Row> {
    classified
        .iter()
        .map(|item| {
            let image = &item.image;
            let mut row = Row {
                workload: image.workload.clone(),
                container: image.container.clone(),
                init: image.init,
                image: image.image.clone(),
                status: Status::NotPatchVersioned,
                newest_patch: None,
                digest: None,
                detail: None,
            };
            let reference = match ImageRef::parse(&image.image) {
                Ok(reference) => reference,
                Err(error) => {
                    row.detail = Some(error.to_string());
                    return row;
                }
            };
            if reference.digest.is_some() {
                row.status = Status::PinnedByDigest;
                return row;
            }
            let Some((repository, tag)) = &item.lookup else {
                return row;
            };
            let decision = common::decide(&image.image, &image.workload.namespace, approvals);
            if rolled_out.contains(&(image.workload.clone(), image.container.clone())) {
                row.status = Status::RolledOut;
            } else if let Decision::Rewrite(rewrite) = &decision {
                row.status = Status::Approved;
                row.detail = Some(format!("approved: {}", rewrite.to));
            }
            let Some(list) = tags.get(repository) else {
                if row.status == Status::NotPatchVersioned {
                    row.status = Status::RegistryError;
                }
                return row;
            };
            if let Some((patch, _)) = approvals.scheme_for(repository).newest_patch(tag, list.iter().map(String::as_str)) {
                let key = PatchKey { repository: repository.to_string(), patch: patch.to_string() };
                row.newest_patch = Some(patch.to_string());
                row.digest = candidates.get(&key).and_then(|candidate| candidate.digest.clone());
                if row.status == Status::NotPatchVersioned {
                    row.status = Status::PatchAvailable;
                }
            } else if row.status == Status::NotPatchVersioned {
                row.status = Status::UpToDate;
            }
            row
        })
        .collect()
}

/// Announces the candidates that no scan announced before, and returns what happened.
async fn announce(
    state: &StateStore,
    mut notice: Notice,
    candidates: &BTreeMap<PatchKey, Candidate>,
    auto_approved: &BTreeMap<PatchKey, String>,
    slack_url: Option<Secret>,
    scan_id: &str,
    options: &Options,
) -> NoticeSummary {
    let mut summary = NoticeSummary::default();
    let keys: BTreeSet<PatchKey> = candidates.keys().cloned().collect();
    let now = Utc::now();

    let new = if options.dry_run {
        state.read().await.map(|document| document.unannounced(&keys, scan_id, now, options.claim_ttl))
    } else {
        claim(state, &keys, scan_id, now, options).await
    };
    let new = match new {
        Ok(new) => new,
        Err(error) => {
            tracing::warn!(%error, "cannot read or claim the state; nothing is announced this time");
            summary.error = Some(error.to_string());
            return summary;
        }
    };
    notice.entries = new.iter().map(|key| patch_entry(key, &candidates[key], auto_approved.get(key))).collect();
    let messages = notice.to_messages();
    if messages.is_empty() {
        return summary;
    }

    let Some(url) = slack_url else {
        for message in &messages {
            println!("{}", serde_json::to_string_pretty(&message.payload).expect("a message always serializes"));
        }
        summary.messages_sent = messages.len();
        summary.announced = new.into_iter().collect();
        return summary;
    };

    let mut failed_from = messages.len();
    match SlackClient::new(url, options.slack_timeout, options.slack_retry()) {
        Ok(slack) => {
            for (index, message) in messages.iter().enumerate() {
                if let Err(error) = slack.send(message).await {
                    tracing::warn!(%error, part = index + 1, parts = messages.len(), "Slack did not accept the notice; the next scan retries");
                    summary.error = Some(error.to_string());
                    failed_from = index;
                    break;
                }
                summary.messages_sent += 1;
            }
        }
        Err(error) => {
            summary.error = Some(format!("cannot set up the Slack client: {error}"));
            failed_from = 0;
        }
    }

    let undelivered: BTreeSet<&PatchKey> = messages[failed_from..].iter().flat_map(|message| &message.patches).collect();
    let delivered: BTreeMap<PatchKey, Option<String>> = new
        .iter()
        .filter(|key| !undelivered.contains(key))
        .map(|key| (key.clone(), candidates[key].digest.clone()))
        .collect();
    let result = state
        .update(|document| {
            document.confirm(scan_id, &delivered, Utc::now());
            true
        })
        .await;
    match result {
        Ok(_) => summary.announced = delivered.into_keys().collect(),
        Err(error) => {
            // NOTE: Slack has the message but the state does not, so the next scan announces these patches again.
            tracing::error!(%error, "notice sent but not recorded");
            summary.error = Some(format!("notice sent but not recorded: {error}"));
        }
    }
    summary
}

/// Claims the unannounced candidates for this scan; a conflict re-reads and drops what another scan claimed.
async fn claim(state: &StateStore, keys: &BTreeSet<PatchKey>, scan_id: &str, now: DateTime<Utc>, options: &Options) -> Result<BTreeSet<PatchKey>, crate::state::StateError> {
    let mut new = BTreeSet::new();
    state
        .update(|document| {
            new = document.unannounced(keys, scan_id, now, options.claim_ttl);
            if new.is_empty() {
                return false;
            }
            document.claim(scan_id, &new, now, options.claim_ttl);
            true
        })
        .await?;
    Ok(new)
}

fn patch_entry(key: &PatchKey, candidate: &Candidate, auto_approved_by: Option<&String>) -> PatchEntry {
    PatchEntry {
        key: key.clone(),
        running_tags: candidate.running_tags.iter().cloned().collect(),
        digest: candidate.digest.clone(),
        workloads: candidate.workloads.clone(),
        auto_approved_by: auto_approved_by.cloned(),
    }
}
