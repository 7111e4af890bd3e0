//! One scan, from configuration to report.
//!
//! ```text
//!  configuration: Slack Secret ──(missing: ScanError::Config)
//!  approvals ──(cannot be parsed: last good document from state, no auto-approval,
//!               Report::configuration_error, exit status 2 after the scan)
//!  discovery ─► rows; images with a patch-versioned tag ─► by source repository
//!  registry: one tag list per repository ─► newest patch per image ─► digests
//!  auto policy ─► approvals ─► statuses ─► rollout
//!  state: unannounced patches, unnotified approvals errors and unconfirmed approvals
//!         ─► claim ─► Slack ─► confirm or release
//!  report ─► stdout (by the caller) and ConfigMap image-patch-report
//! ```
//!
//! Only a missing Slack Secret, a namespace selector that the API server rejects, an
//! unusable registry setup and an unreachable API server end a scan early with an
//! error. An approvals document that cannot be parsed, and registry, Slack or state
//! faults, are recorded in the report, and the next scan retries what this one could
//! not finish. The errors of the approvals document also go to Slack, once per set of
//! errors, even when the scan finds no new patch. So do the approvals that the registry
//! does not confirm, once per set, while the report lists them on every scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::approvals::CONFIGMAP_NAME as APPROVALS_NAME;
use common::{Approvals, Decision, ImageRef, Mode, Repository};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret as KubeSecret, ServiceAccount};
use kube::api::Api;
use tracing::Instrument;
use tracing::field::Empty;

use crate::approvals_source;
use crate::approve::{self, AutoApproval};
use crate::configmap::ConfigMapStore;
use crate::discovery::{self, NamespaceSelection, SelectedNamespace, WorkloadImage};
use crate::notice::{ApprovalsErrors, EntryWorkload, Notice, PatchEntry};
use crate::options::{Options, RolloutMode};
use crate::registry::{Credential, RegistryClient, RegistryConfig, credentials};
use crate::report::{self, NoticeSummary, Report, Row, Status};
use crate::rollout::{NamespaceFilter, Plan, UnconfirmedApproval};
use crate::secret::Secret;
use crate::slack::SlackClient;
use crate::state::{NotifiedSet, PatchKey, StateStore};

/// Registry lookups in flight at once, over all registries. Each registry also has its own, lower cap.
const LOOKUP_CONCURRENCY: usize = 16;

/// A failure that ends a scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The configuration is invalid, and the operator has to fix it. Exit status 2,
    /// either at once or, for an approvals document that cannot be parsed, after the scan.
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
#[tracing::instrument(name = "scan", skip_all, fields(scan_id = Empty, cluster = %options.cluster_name, dry_run = options.dry_run))]
pub async fn run(client: kube::Client, options: &Options) -> Result<Report, ScanError> {
    let started = Utc::now();
    let scan_id = format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "scan".into()), started.timestamp_nanos_opt().unwrap_or_default());
    tracing::Span::current().record("scan_id", scan_id.as_str());
    let controller_namespace = options.controller_namespace.as_str();

    let slack_url = if options.dry_run { None } else { Some(read_slack_url(&client, options).await?) };
    let approvals_store = ConfigMapStore::new(client.clone(), controller_namespace, APPROVALS_NAME);
    let state = StateStore::new(client.clone(), controller_namespace);
    let loaded = approvals_source::load(&approvals_store, &state, controller_namespace, options.dry_run).await?;
    for error in &loaded.entry_errors {
        tracing::warn!(namespace = controller_namespace, configmap = APPROVALS_NAME, %error, "invalid approval entry skipped; the other entries stay in force");
    }
    let mut approvals = loaded.approvals;

    let mut report = empty_report(&options.cluster_name, started, options.dry_run);
    report.approval_errors = loaded.entry_errors.iter().map(ToString::to_string).collect();
    report.configuration_error = loaded.unparsable.as_ref().map(approvals_source::UnparsableDocument::report_text);
    report.errors.extend(loaded.state_errors);

    let selected = select_namespaces(&client, options, &mut report).await?;
    report.namespaces = selected.iter().map(|namespace| namespace.name.clone()).collect();
    let mut images = Vec::new();
    for namespace in &report.namespaces {
        match discovery::discover_namespace(&client, namespace).await {
            Ok(found) => images.extend(found),
            Err(error) => {
                tracing::warn!(namespace = %namespace, %error, "cannot list the workloads of the namespace; it is left for the next scan");
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
    let unresolved = resolve_digests(&registry, &mut candidates, &credentials, &mut report).await;

    // Auto-approval writes the approvals document, which must not overwrite a document
    // that an operator is still editing.
    let auto_approved = if loaded.unparsable.is_none() {
        auto_approve(&approvals_store, &loaded.document, &mut approvals, &candidates, options, &mut report).await
    } else {
        BTreeMap::new()
    };
    let images: Vec<WorkloadImage> = classified.iter().map(|item| item.image.clone()).collect();
    let filter = NamespaceFilter::new(&selected, controller_namespace);
    let plan = crate::rollout::plan(&images, &approvals, &filter);
    // Checked in every rollout mode, because the webhook applies the same approvals at the next deploy.
    let unconfirmed = crate::rollout::check_approvals(&registry, &plan.rollouts, &approvals, &tags, &credentials).await;
    let rows_rolled_out = roll_out(&client, plan, &unconfirmed, options, &mut report).await;
    report.rows = build_rows(&classified, &tags, &candidates, &unresolved, &approvals, &rows_rolled_out, options.dry_run);
    crate::rollout::mark_unconfirmed_rows(&mut report.rows, &unconfirmed, &approvals);

    let notice = Notice {
        cluster: options.cluster_name.clone(),
        controller_namespace: controller_namespace.to_string(),
        entries: Vec::new(),
        rollouts: report.rollouts.clone(),
        configuration_error: loaded.unparsable.as_ref().map(|unparsable| unparsable.notice_text(controller_namespace)),
        approvals_errors: None,
        unconfirmed_approvals: Vec::new(),
    };
    let approvals_errors = ApprovalsErrors { unparsable: report.configuration_error.clone(), invalid_entries: report.approval_errors.clone() };
    report.notice = announce(&state, notice, approvals_errors, &unconfirmed, &candidates, &auto_approved, slack_url, &scan_id, options).await;

    if !options.dry_run {
        let store = ConfigMapStore::new(client.clone(), controller_namespace, report::CONFIGMAP_NAME);
        if let Err(error) = report::store(&store, &report).await {
            tracing::warn!(namespace = controller_namespace, configmap = report::CONFIGMAP_NAME, %error, "cannot store the report; it is printed only, and the next scan stores its own");
            report.errors.push(format!("report ConfigMap: {error}"));
        }
    }
    Ok(report)
}

/// Returns the configuration error of a finished scan, which makes the binary exit
/// with status 2 after it printed and stored the report.
pub fn check_configuration(report: &Report) -> Result<(), ScanError> {
    match &report.configuration_error {
        Some(error) => Err(ScanError::Config(error.clone())),
        None => Ok(()),
    }
}

fn empty_report(cluster: &str, scanned_at: DateTime<Utc>, dry_run: bool) -> Report {
    Report {
        cluster: cluster.to_string(),
        scanned_at,
        dry_run,
        namespaces: Vec::new(),
        rows: Vec::new(),
        configuration_error: None,
        approval_errors: Vec::new(),
        registry_errors: BTreeMap::new(),
        discovery_errors: BTreeMap::new(),
        auto_approved: Vec::new(),
        rollouts: Vec::new(),
        rollouts_skipped: Vec::new(),
        notice: NoticeSummary::default(),
        errors: Vec::new(),
    }
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
    crate::slack::check_webhook_url(&value).map_err(|problem| {
        ScanError::Config(format!(
            "Secret {namespace}/{name}, key {key:?}: the Slack webhook URL {problem}; expected an absolute https:// URL (http:// only for a loopback host)"
        ))
    })?;
    Ok(Secret::new(value))
}

/// Returns the namespaces that the options select. A namespace named with `--namespace`
/// that does not exist is logged and listed in the report's discovery errors.
async fn select_namespaces(client: &kube::Client, options: &Options, report: &mut Report) -> Result<Vec<SelectedNamespace>, ScanError> {
    let selection = if options.namespaces.is_empty() {
        NamespaceSelection::Selector(options.namespace_selector.clone())
    } else {
        NamespaceSelection::Names(options.namespaces.clone())
    };
    let selected = match discovery::select_namespaces(client, &selection).await {
        Ok(selected) => selected,
        // The options check the selector's syntax, so a rejection here means that the
        // API server is stricter than that check.
        Err(kube::Error::Api(status)) if status.code == 400 && matches!(selection, NamespaceSelection::Selector(_)) => {
            return Err(ScanError::Config(format!(
                "--namespace-selector {:?} is rejected by the API server: {}; give a label selector such as {}",
                options.namespace_selector,
                status.message,
                crate::options::DEFAULT_NAMESPACE_SELECTOR
            )));
        }
        Err(error) => return Err(error.into()),
    };
    for name in &selected.missing {
        tracing::warn!(namespace = %name, "namespace named with --namespace does not exist; it is not scanned");
        report.discovery_errors.insert(name.clone(), "namespace does not exist; check the name given with --namespace (SCANNER_NAMESPACES)".to_string());
    }
    if let NamespaceSelection::Selector(selector) = &selection
        && selected.namespaces.is_empty()
    {
        tracing::warn!(%selector, "no namespace matches --namespace-selector; label the namespaces to scan, or name them with --namespace");
    }
    Ok(selected.namespaces)
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

/// Finds the lookup key of an image. A tag with a digest counts like a tag alone, because
/// the webhook and rollout rewrite it to an approved patch too.
fn classify(image: WorkloadImage, approvals: &Approvals) -> Classified {
    let lookup = ImageRef::parse(&image.image).ok().and_then(|reference| {
        let tag = reference.tag.clone()?;
        let repository = approvals.source_repository(&reference);
        approvals.scheme_for(&repository).parse(&tag).map(|_| (repository, tag))
    });
    Classified { image, lookup }
}

/// Reads the pull Secrets that the images name, directly or through their pod spec's
/// service account, and returns the credentials for each source registry in the order
/// first seen. A Secret or service account that cannot be read is skipped.
async fn collect_credentials(client: &kube::Client, classified: &[Classified]) -> HashMap<Repository, Vec<Credential>> {
    let mut accounts: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut secrets: HashMap<(String, String), BTreeMap<String, Credential>> = HashMap::new();
    let mut by_repository: HashMap<Repository, Vec<Credential>> = HashMap::new();
    for item in classified {
        let Some((repository, _)) = &item.lookup else {
            continue;
        };
        let namespace = &item.image.workload.namespace;
        let account_key = (namespace.clone(), item.image.service_account.clone());
        if !accounts.contains_key(&account_key) {
            let names = read_account_pull_secrets(client, namespace, &item.image.service_account).await;
            accounts.insert(account_key.clone(), names);
        }
        let names: Vec<&String> = item.image.pull_secrets.iter().chain(&accounts[&account_key]).collect();
        for name in names {
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

/// Returns the names of a service account's `imagePullSecrets`, or none when it cannot be read.
async fn read_account_pull_secrets(client: &kube::Client, namespace: &str, name: &str) -> Vec<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match accounts.get_opt(name).await {
        Ok(Some(account)) => account.image_pull_secrets.into_iter().flatten().map(|secret| secret.name).filter(|name| !name.is_empty()).collect(),
        Ok(None) => {
            tracing::warn!(namespace, service_account = name, "service account of a workload does not exist; its pull Secrets are skipped");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(namespace, service_account = name, %error, "cannot read the service account of a workload; its pull Secrets are skipped");
            Vec::new()
        }
    }
}

async fn read_pull_secret(client: &kube::Client, namespace: &str, name: &str) -> BTreeMap<String, Credential> {
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            tracing::warn!(namespace, secret = name, "pull Secret does not exist; the registry is read without it");
            return BTreeMap::new();
        }
        Err(error) => {
            tracing::warn!(namespace, secret = name, %error, "cannot read the pull Secret; the registry is read without it");
            return BTreeMap::new();
        }
    };
    let Some(document) = secret.data.as_ref().and_then(|data| data.get(".dockerconfigjson")) else {
        tracing::warn!(namespace, secret = name, "pull Secret has no .dockerconfigjson key; the registry is read without it");
        return BTreeMap::new();
    };
    credentials::parse_docker_config(&document.0).unwrap_or_else(|error| {
        tracing::warn!(namespace, secret = name, %error, "invalid pull Secret skipped; the registry is read without it");
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
        .map(|repository| {
            let span = lookup_span(repository, None);
            async move {
                let result = registry.list_tags(repository, credentials_for(credentials, repository)).await;
                match &result {
                    Ok(list) => tracing::info!(tags = list.len(), "read the tag list"),
                    Err(error) => tracing::warn!(%error, "cannot read the tag list; the repository's patches are unknown and left for the next scan"),
                }
                (repository, result)
            }
            .instrument(span)
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;

    let mut tags = HashMap::new();
    for (repository, result) in results {
        match result {
            Ok(list) => {
                tags.insert(repository.clone(), Arc::new(list));
            }
            Err(error) => {
                report.registry_errors.insert(repository.to_string(), error.to_string());
            }
        }
    }
    tags
}

/// Returns the span of one registry lookup: a tag list, or the digest of `patch`.
fn lookup_span(repository: &Repository, patch: Option<&str>) -> tracing::Span {
    tracing::info_span!("repository_lookup", registry = %repository.registry, repository = %repository.path, patch = patch)
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

/// Resolves the manifest digest of each candidate. A candidate whose digest cannot be
/// resolved is removed, so that it is neither approved nor announced nor recorded, and
/// the next scan looks it up again. Returns the removed patches with the registry's error.
async fn resolve_digests(
    registry: &RegistryClient,
    candidates: &mut BTreeMap<PatchKey, Candidate>,
    credentials: &HashMap<Repository, Vec<Credential>>,
    report: &mut Report,
) -> BTreeMap<PatchKey, String> {
    let results: Vec<_> = futures::stream::iter(candidates.iter())
        .map(|(key, candidate)| {
            let span = lookup_span(&candidate.repository, Some(&candidate.patch));
            async move {
                let result = registry.manifest_digest(&candidate.repository, &candidate.patch, credentials_for(credentials, &candidate.repository)).await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "cannot resolve the patch's manifest digest; the patch is not announced and is left for the next scan");
                }
                (key.clone(), result)
            }
            .instrument(span)
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;
    let mut unresolved = BTreeMap::new();
    for (key, result) in results {
        match result {
            Ok(digest) => candidates.get_mut(&key).expect("results come from the candidates").digest = Some(digest),
            Err(error) => {
                report.registry_errors.insert(format!("{}:{}", key.repository, key.patch), format!("digest: {error}"));
                candidates.remove(&key);
                unresolved.insert(key, error.to_string());
            }
        }
    }
    unresolved
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
            tracing::warn!(configmap = APPROVALS_NAME, %error, "auto-approval failed; the patches are announced as available, and the next scan approves them");
            report.errors.push(format!("auto-approval: {error}"));
            BTreeMap::new()
        }
    }
}

/// Reports the approvals that the registry did not confirm (a missing patch tag, or
/// another digest), rolls out the workloads of `plan` without them, and reports the
/// workloads that it skips. Returns the rows (workload, container) that were changed.
/// A dry run only plans, so the rows returned are those it would change.
async fn roll_out(
    client: &kube::Client,
    plan: Plan,
    unconfirmed: &[crate::rollout::UnconfirmedApproval],
    options: &Options,
    report: &mut Report,
) -> BTreeSet<(crate::discovery::WorkloadId, String)> {
    let planned = plan.rollouts;
    for approval in unconfirmed {
        report.registry_errors.insert(approval.report_key(), approval.describe());
    }
    if options.rollout == RolloutMode::Off {
        return BTreeSet::new();
    }

    for skipped in &plan.skipped {
        skipped.log();
    }
    report.rollouts_skipped = plan.skipped;
    let planned = crate::rollout::without_unconfirmed(planned, unconfirmed, options.rollout);
    report.rollouts = if options.dry_run {
        crate::rollout::preview(&planned, options.rollout)
    } else {
        crate::rollout::apply(client, &planned, options.rollout).await
    };

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
    unresolved: &BTreeMap<PatchKey, String>,
    approvals: &Approvals,
    rolled_out: &BTreeSet<(crate::discovery::WorkloadId, String)>,
    dry_run: bool,
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
            let Some((repository, tag)) = &item.lookup else {
                // A digest with no patch-versioned tag beside it is never rewritten.
                if reference.digest.is_some() {
                    row.status = Status::PinnedByDigest;
                }
                return row;
            };
            let decision = common::decide(&image.image, &image.workload.namespace, approvals);
            let changed = rolled_out.contains(&(image.workload.clone(), image.container.clone()));
            if changed && !dry_run {
                row.status = Status::RolledOut;
            } else if let Decision::Rewrite(rewrite) = &decision {
                if changed {
                    row.status = Status::WouldRollOut;
                    row.detail = Some(format!("would roll out: {} → {}", rewrite.from, rewrite.to));
                } else {
                    row.status = Status::Approved;
                    row.detail = Some(format!("approved: {}", rewrite.to));
                }
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
                if let Some(error) = unresolved.get(&key) {
                    // Without a digest the patch is unknown, like a repository without a tag list.
                    if row.status == Status::NotPatchVersioned {
                        row.status = Status::RegistryError;
                        row.detail = Some(format!("digest: {error}"));
                    }
                } else if row.status == Status::NotPatchVersioned {
                    row.status = Status::PatchAvailable;
                }
            } else if row.status == Status::NotPatchVersioned {
                row.status = Status::UpToDate;
            }
            row
        })
        .collect()
}

/// Announces the candidates that no scan announced before, the approvals errors unless
/// this set of errors was notified before, and the unconfirmed approvals unless this
/// set of them was notified before, and returns what happened.
#[allow(clippy::too_many_arguments)]
async fn announce(
    state: &StateStore,
    mut notice: Notice,
    approvals_errors: ApprovalsErrors,
    unconfirmed: &[UnconfirmedApproval],
    candidates: &BTreeMap<PatchKey, Candidate>,
    auto_approved: &BTreeMap<PatchKey, String>,
    slack_url: Option<Secret>,
    scan_id: &str,
    options: &Options,
) -> NoticeSummary {
    let mut summary = NoticeSummary::default();
    let keys: BTreeSet<PatchKey> = candidates.keys().cloned().collect();
    let error_texts = approvals_errors.texts();
    let unconfirmed_keys = unconfirmed_keys(unconfirmed);
    let now = Utc::now();

    let claimed = if options.dry_run {
        state.read().await.map(|document| Claimed {
            new: document.unannounced(&keys, scan_id, now, options.claim_ttl),
            send_errors: document.unnotified(NotifiedSet::ConfigurationErrors, &error_texts, scan_id, now, options.claim_ttl),
            send_unconfirmed: document.unnotified(NotifiedSet::UnconfirmedApprovals, &unconfirmed_keys, scan_id, now, options.claim_ttl),
        })
    } else {
        claim(state, &keys, &error_texts, &unconfirmed_keys, scan_id, now, options).await
    };
    let Claimed { new, send_errors, send_unconfirmed } = match claimed {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(configmap = crate::state::CONFIGMAP_NAME, %error, "cannot read or claim the state; nothing is announced, and the next scan retries");
            summary.error = Some(error.to_string());
            return summary;
        }
    };
    notice.entries = new.iter().map(|key| patch_entry(key, &candidates[key], auto_approved.get(key))).collect();
    if send_errors {
        notice.approvals_errors = Some(approvals_errors);
    }
    if send_unconfirmed {
        notice.unconfirmed_approvals = unconfirmed.iter().map(UnconfirmedApproval::describe).collect();
    }
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
            tracing::warn!(%error, "cannot set up the Slack client; nothing is announced, and the next scan retries");
            summary.error = Some(format!("cannot set up the Slack client: {error}"));
            failed_from = 0;
        }
    }

    let undelivered: BTreeSet<&PatchKey> = messages[failed_from..].iter().flat_map(|message| &message.patches).collect();
    let errors_delivered = send_errors && !messages[failed_from..].iter().any(|message| message.approvals_errors);
    let unconfirmed_delivered = send_unconfirmed && !messages[failed_from..].iter().any(|message| message.unconfirmed_approvals);
    let delivered: BTreeMap<PatchKey, Option<String>> = new
        .iter()
        .filter(|key| !undelivered.contains(key))
        .map(|key| (key.clone(), candidates[key].digest.clone()))
        .collect();
    let result = state
        .update_with_retry(&crate::state::UPDATE_RETRY, |document| {
            document.confirm(scan_id, &delivered, Utc::now());
            if errors_delivered {
                document.record_set(NotifiedSet::ConfigurationErrors, &error_texts, Utc::now());
            }
            if unconfirmed_delivered {
                document.record_set(NotifiedSet::UnconfirmedApprovals, &unconfirmed_keys, Utc::now());
            }
            true
        })
        .await;
    match result {
        Ok(_) => summary.announced = delivered.into_keys().collect(),
        Err(error) => {
            // NOTE: when every attempt fails, Slack has the message but the state does not, so the
            // first scan after this scan's claim expires (--claim-ttl) announces these patches,
            // the approvals errors and the unconfirmed approvals again.
            let patches = delivered.keys().map(|key| format!("{}:{}", key.repository, key.patch)).collect::<Vec<_>>().join(", ");
            tracing::error!(
                configmap = crate::state::CONFIGMAP_NAME,
                %patches,
                %error,
                "Slack accepted the notice, but the announced patches could not be recorded; a scan after the claim expires announces them again"
            );
            summary.error = Some(format!("notice sent but not recorded ({patches}): {error}"));
        }
    }
    summary
}

/// The claim of one scan: the candidates it announces, and whether it sends the
/// approvals errors and the unconfirmed approvals.
struct Claimed {
    new: BTreeSet<PatchKey>,
    send_errors: bool,
    send_unconfirmed: bool,
}

/// Returns the sorted, distinct [`UnconfirmedApproval::notice_key`]s: the set that the
/// state records as notified.
fn unconfirmed_keys(unconfirmed: &[UnconfirmedApproval]) -> Vec<String> {
    let keys: BTreeSet<String> = unconfirmed.iter().map(UnconfirmedApproval::notice_key).collect();
    keys.into_iter().collect()
}

/// Claims the unannounced candidates for this scan, and the approvals errors `errors`
/// and the unconfirmed approvals `unconfirmed` unless each set was notified. A
/// conflict re-reads and drops what another scan claimed.
async fn claim(
    state: &StateStore,
    keys: &BTreeSet<PatchKey>,
    errors: &[String],
    unconfirmed: &[String],
    scan_id: &str,
    now: DateTime<Utc>,
    options: &Options,
) -> Result<Claimed, crate::state::StateError> {
    let mut claimed = Claimed { new: BTreeSet::new(), send_errors: false, send_unconfirmed: false };
    state
        .update(|document| {
            claimed.new = document.unannounced(keys, scan_id, now, options.claim_ttl);
            claimed.send_errors = document.unnotified(NotifiedSet::ConfigurationErrors, errors, scan_id, now, options.claim_ttl);
            claimed.send_unconfirmed = document.unnotified(NotifiedSet::UnconfirmedApprovals, unconfirmed, scan_id, now, options.claim_ttl);
            // An empty set clears its record, so that texts that return are notified again.
            let errors_cleared = errors.is_empty() && document.clear_set(NotifiedSet::ConfigurationErrors);
            let unconfirmed_cleared = unconfirmed.is_empty() && document.clear_set(NotifiedSet::UnconfirmedApprovals);
            if claimed.new.is_empty() && !claimed.send_errors && !claimed.send_unconfirmed {
                return errors_cleared || unconfirmed_cleared;
            }
            document.claim(scan_id, &claimed.new, now, options.claim_ttl);
            if claimed.send_errors {
                document.claim_set(NotifiedSet::ConfigurationErrors, scan_id, errors);
            }
            if claimed.send_unconfirmed {
                document.claim_set(NotifiedSet::UnconfirmedApprovals, scan_id, unconfirmed);
            }
            true
        })
        .await?;
    Ok(claimed)
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::discovery::{WorkloadId, WorkloadKind};
    use crate::retry::RetryPolicy;

    /// A log writer that keeps everything written, for assertions.
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl CapturedLogs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for CapturedLogs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for CapturedLogs {
        type Writer = CapturedLogs;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn tag_and_digest_rows_follow_decide() {
        let approvals = Approvals::parse("approvals:\n  - image: mojaloop/quoting-service\n    version: v10.4.0\n    patch: v10.4.0.2-patch\n").unwrap().0;
        let digest = format!("sha256:{}", "b".repeat(64));
        let image = |name: &str, reference: String| WorkloadImage {
            workload: WorkloadId { namespace: "mojaloop".into(), kind: WorkloadKind::Deployment, name: name.into() },
            container: "app".into(),
            init: false,
            image: reference,
            pull_secrets: Vec::new(),
            service_account: "default".into(),
        };
        let images = vec![
            image("tagged", format!("mojaloop/quoting-service:v10.4.0@{digest}")),
            image("rolled", format!("mojaloop/quoting-service:v10.4.0@{digest}")),
            image("pinned", format!("mojaloop/quoting-service@{digest}")),
            image("latest", format!("mojaloop/quoting-service:latest@{digest}")),
        ];
        let classified: Vec<Classified> = images.into_iter().map(|image| classify(image, &approvals)).collect();
        let list = vec!["v10.4.0".to_string(), "v10.4.0.2-patch".to_string()];
        let tags = HashMap::from([(Repository::new("docker.io", "mojaloop/quoting-service"), Arc::new(list))]);
        let rolled_out = BTreeSet::from([(classified[1].image.workload.clone(), "app".to_string())]);

        let rows = build_rows(&classified, &tags, &BTreeMap::new(), &BTreeMap::new(), &approvals, &rolled_out, false);

        let statuses: Vec<(&str, Status)> = rows.iter().map(|row| (row.workload.name.as_str(), row.status)).collect();
        assert_eq!(
            statuses,
            [("tagged", Status::Approved), ("rolled", Status::RolledOut), ("pinned", Status::PinnedByDigest), ("latest", Status::PinnedByDigest)]
        );
        assert_eq!(rows[0].detail.as_deref(), Some("approved: mojaloop/quoting-service:v10.4.0.2-patch"));
        assert_eq!(rows[0].newest_patch.as_deref(), Some("v10.4.0.2-patch"));
    }

    #[tokio::test]
    async fn lookup_failure_log_names_repository() {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // A loopback port that was just free: every connection is refused.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let repository = Repository::new(&address, "mojaloop/als");
        let registry = RegistryClient::new(RegistryConfig {
            insecure: vec![address.clone()],
            concurrency: 1,
            timeout: Duration::from_secs(2),
            retry: RetryPolicy { attempts: 1, backoff: Duration::from_millis(10), max_retry_after: Duration::from_secs(1) },
            page_size: 10,
        })
        .unwrap();
        let image = WorkloadImage {
            workload: WorkloadId { namespace: "mojaloop".into(), kind: WorkloadKind::Deployment, name: "als".into() },
            container: "als".into(),
            init: false,
            image: format!("{address}/mojaloop/als:v1.0.0"),
            pull_secrets: vec!["hub-pull".into()],
            service_account: "default".into(),
        };
        let classified = vec![Classified { image, lookup: Some((repository.clone(), "v1.0.0".into())) }];
        let credential = Credential { username: "hub".into(), password: Secret::new("hunter2-password") };
        let credentials = HashMap::from([(repository.clone(), vec![credential])]);
        let mut report = empty_report("hub", Utc::now(), false);

        let tags = list_tags(&registry, &classified, &credentials, &mut report).await;

        let text = logs.text();
        assert!(tags.is_empty());
        assert!(text.contains(&format!("repository_lookup{{registry={address} repository=mojaloop/als}}")), "{text}");
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("left for the next scan"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(report.registry_errors.contains_key(&repository.to_string()));
    }
}
