//! The certs script's option checks. Each invalid value is rejected with exit status 2 and
//! a message that names the option and the value, before the script writes a file or runs
//! kubectl. A valid run issues a certificate with the requested names and validity.
//!
//! A stand-in `kubectl` first on PATH records its calls, so that a rejected run that still
//! reached for the cluster fails the test without touching a real one. A test can make it
//! act as a cluster without the objects, or fail as kubectl does without a context, without
//! a reachable API server, or without the right to get Secrets. As a cluster with the
//! MutatingWebhookConfiguration, it can deny one right to `kubectl auth can-i` or fail one
//! write.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rstest::rstest;

/// A Kubernetes name one character longer than a DNS label may be.
const NAME_64: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The stand-in `kubectl`. It appends its arguments to `kubectl-calls` and behaves as the
/// mode named in the file `kubectl-mode`. Without that file it prints nothing and succeeds.
///
/// The mode `cluster` has no Secrets and a MutatingWebhookConfiguration with one webhook and
/// no caBundle. `kubectl auth can-i` prints "no" and fails when its arguments contain the
/// text in the file `kubectl-deny`. Any call whose arguments contain the text in
/// `kubectl-fail` fails as Forbidden. `kubectl apply` logs `applied NAME` for the object it
/// is given.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
dir="$(dirname "$0")/.."
printf '%s\n' "$*" >>"$dir/kubectl-calls"
mode=$(cat "$dir/kubectl-mode" 2>/dev/null)
case "$mode" in
  context-missing)
    echo 'error: context "nope" does not exist' >&2
    exit 1 ;;
  unreachable)
    echo 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' >&2
    exit 1 ;;
  get-forbidden)
    case " $* " in
      *" get "*)
        echo 'Error from server (Forbidden): secrets "image-patch-webhook-tls-ca" is forbidden: User "ci" cannot get resource "secrets" in API group "" in the namespace "image-patch-system"' >&2
        exit 1 ;;
    esac ;;
  webhook-config-forbidden)
    case " $* " in
      *" get mutatingwebhookconfiguration "*)
        echo 'Error from server (Forbidden): mutatingwebhookconfigurations.admissionregistration.k8s.io "image-patch-webhook" is forbidden: User "ci" cannot get resource "mutatingwebhookconfigurations" in API group "admissionregistration.k8s.io" at the cluster scope' >&2
        exit 1 ;;
      *" get "*" --ignore-not-found "*) exit 0 ;;
    esac ;;
  empty)
    case " $* " in
      *" auth can-i "*) echo yes ;;
      *" get "*" --ignore-not-found "*) exit 0 ;;
      *" get "*)
        echo 'Error from server (NotFound): the object was not found' >&2
        exit 1 ;;
      *" apply "*) echo "object created" ;;
    esac ;;
  cluster)
    deny=$(cat "$dir/kubectl-deny" 2>/dev/null)
    fail=$(cat "$dir/kubectl-fail" 2>/dev/null)
    if [ -n "$fail" ]; then
      case "$*" in
        *"$fail"*)
          echo "Error from server (Forbidden): User \"trial\" cannot $fail" >&2
          exit 1 ;;
      esac
    fi
    case " $* " in
      *" auth can-i "*)
        if [ -n "$deny" ]; then
          case "$*" in
            *"$deny"*)
              echo no
              exit 1 ;;
          esac
        fi
        echo yes ;;
      *" get mutatingwebhookconfiguration "*" --ignore-not-found "*) printf 'found:x' ;;
      *" get mutatingwebhookconfiguration "*) echo ;;
      *" get "*" --ignore-not-found "*) ;;
      *" create secret "*" --dry-run=client "*)
        name=$(printf '%s\n' "$*" | sed 's/.* create secret [a-z]* \([^ ]*\).*/\1/')
        printf 'kind: Secret\nmetadata:\n  name: %s\n' "$name" ;;
      *" apply "*)
        name=$(sed -n 's/^  name: //p')
        printf 'applied %s\n' "$name" >>"$dir/kubectl-calls"
        echo "secret/$name created" ;;
      *" patch "*) echo "mutatingwebhookconfiguration.admissionregistration.k8s.io/image-patch-webhook patched" ;;
    esac ;;
esac
"#;

/// A scratch directory with the stand-in `kubectl` in `bin/`, an output directory `out/`
/// that only the script may create, and a regular file `file`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let kubectl = bin.join("kubectl");
        std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("file"), "not a directory\n").unwrap();
        Self { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Runs the script with `args` after replacing `OUT` (also in `--dir=OUT`) with the
    /// output directory and `FILE` with the regular file.
    fn run(&self, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-script/certs.sh");
        let args: Vec<OsString> = args
            .iter()
            .map(|arg| match *arg {
                "OUT" => self.out().into_os_string(),
                "--dir=OUT" => format!("--dir={}", self.out().display()).into(),
                "FILE" => self.dir.path().join("file").into_os_string(),
                other => other.into(),
            })
            .collect();
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(script)
            .args(args)
            .env("PATH", path)
            .current_dir(self.dir.path())
            .output()
            .expect("bash runs")
    }

    /// Returns the stand-in kubectl's calls, one a line.
    fn kubectl_calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubectl-calls")).unwrap_or_default()
    }

    /// Makes the stand-in kubectl act as `mode` (see [`FAKE_KUBECTL`]).
    fn set_kubectl_mode(&self, mode: &str) {
        std::fs::write(self.dir.path().join("kubectl-mode"), mode).unwrap();
    }

    /// Makes the stand-in kubectl, in the mode `cluster`, print "no" for the `kubectl auth
    /// can-i` calls whose arguments contain `right`.
    fn deny_right(&self, right: &str) {
        std::fs::write(self.dir.path().join("kubectl-deny"), right).unwrap();
    }

    /// Makes the stand-in kubectl, in the mode `cluster`, fail the calls whose arguments
    /// contain `call`.
    fn fail_call(&self, call: &str) {
        std::fs::write(self.dir.path().join("kubectl-fail"), call).unwrap();
    }

    /// Writes a self-signed CA valid for `days` days to `out/ca.crt` and `out/ca.key`.
    fn write_ca(&self, days: u32) {
        std::fs::create_dir_all(self.out()).unwrap();
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes",
                "-subj",
                "/CN=short-lived-ca",
                "-days",
                &days.to_string(),
            ])
            .arg("-keyout")
            .arg(self.out().join("ca.key"))
            .arg("-out")
            .arg(self.out().join("ca.crt"))
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Returns whether `openssl verify` accepts the certificate at `cert` under the CA at `ca`.
fn openssl_verify(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl runs")
        .status
        .success()
}

/// Runs `openssl x509` on the certificate at `cert` and returns whether it succeeded and
/// its standard output.
fn openssl_x509(cert: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-in"])
        .arg(cert)
        .args(args)
        .output()
        .expect("openssl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[rstest]
#[case::days_word(&["--dir", "OUT", "--days", "abc"], "--days must be a whole number of days from 1 to 3650, got \"abc\"")]
#[case::days_zero(&["--dir", "OUT", "--days", "0"], "--days must be a whole number of days from 1 to 3650, got \"0\"")]
#[case::days_negative(&["--dir", "OUT", "--days", "-5"], "--days must be a whole number of days from 1 to 3650, got \"-5\"")]
#[case::days_empty(&["--dir", "OUT", "--days", ""], "--days must be a whole number of days from 1 to 3650, got \"\"")]
#[case::days_above_ca(&["--dir", "OUT", "--days", "3651"], "--days must be a whole number of days from 1 to 3650, got \"3651\"")]
#[case::days_after_equals(&["--dir", "OUT", "--days=abc"], "--days must be a whole number of days from 1 to 3650, got \"abc\"")]
#[case::days_value_missing(&["--dir", "OUT", "--days"], "--days is missing its value")]
#[case::days_followed_by_option(&["--dir", "OUT", "--days", "--rotate-ca"], "--days is missing its value, because the next argument is the option --rotate-ca")]
#[case::renew_days_word(&["--dir", "OUT", "--renew-days", "soon"], "--renew-days must be a whole number of days from 0 to 364 (less than --days 365), got \"soon\"")]
#[case::renew_days_not_below_days(&["--dir", "OUT", "--days", "30", "--renew-days", "30"], "--renew-days must be a whole number of days from 0 to 29 (less than --days 30), got \"30\"")]
#[case::unknown_option(&["--dir", "OUT", "--bogus"], "unknown option \"--bogus\"")]
#[case::flag_with_value(&["--dir", "OUT", "--rotate-ca=yes"], "--rotate-ca takes no value, got \"yes\"")]
#[case::namespace_uppercase(&["--dir", "OUT", "-n", "Team_A"], "--namespace must be a DNS-1123 label (")]
#[case::namespace_empty(&["--dir", "OUT", "--namespace", ""], "--namespace must be a DNS-1123 label (")]
#[case::namespace_too_long(&["--dir", "OUT", "-n", NAME_64], "--namespace must be a DNS-1123 label (")]
#[case::namespace_value_missing(&["--dir", "OUT", "-n"], "-n is missing its value")]
#[case::service_leading_digit(&["--dir", "OUT", "-s", "1hook"], "--service must be a DNS-1035 label")]
#[case::service_with_dot(&["--dir", "OUT", "--service", "hook.team"], "--service must be a DNS-1035 label")]
#[case::secret_uppercase(&["--dir", "OUT", "--secret", "Webhook-TLS"], "--secret must be a DNS-1123 subdomain (")]
#[case::webhook_config_empty_label(&["--dir", "OUT", "--webhook-config", "hook..config"], "--webhook-config must be a DNS-1123 subdomain (")]
#[case::dns_with_space(&["--dir", "OUT", "--dns", "web hook"], "--dns must be a DNS name such as webhook.example.org")]
#[case::dns_empty(&["--dir", "OUT", "--dns", ""], "--dns must be a DNS name such as webhook.example.org")]
#[case::ip_octet_too_large(&["--dir", "OUT", "--ip", "300.0.0.1"], "--ip must be an IPv4 or IPv6 address such as 127.0.0.1 or ::1")]
#[case::ip_two_double_colons(&["--dir", "OUT", "--ip", "fe80::1::2"], "--ip must be an IPv4 or IPv6 address")]
#[case::ip_nine_groups(&["--dir", "OUT", "--ip", "1:2:3:4:5:6:7:8:9"], "--ip must be an IPv4 or IPv6 address")]
#[case::ip_host_name(&["--dir", "OUT", "--ip", "localhost"], "--ip must be an IPv4 or IPv6 address")]
#[case::dir_empty(&["--files-only", "--dir", ""], "--dir must be a directory path, got \"\"")]
#[case::dir_is_file(&["--files-only", "--dir", "FILE"], "\", which exists and is not a directory")]
#[case::files_only_without_dir(&["--files-only"], "--files-only needs --dir DIR")]
#[case::context_empty(&["--dir", "OUT", "--context", ""], "--context must name a kubectl context")]
fn invalid_option_rejected_up_front(#[case] args: &[&str], #[case] expected: &str) {
    let scratch = Scratch::new();

    let output = scratch.run(args);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.starts_with("certs.sh: "),
        "the message names the script: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!scratch.out().exists(), "the output directory was created");
    assert_eq!(scratch.kubectl_calls(), "", "kubectl ran");
}

#[rstest]
#[case::namespace(&["-n", "Team_A"], "got \"Team_A\"")]
#[case::namespace_too_long(&["-n", NAME_64], NAME_64)]
#[case::service(&["-s", "1hook"], "got \"1hook\"")]
#[case::secret(&["--secret", "Webhook-TLS"], "got \"Webhook-TLS\"")]
#[case::webhook_config(&["--webhook-config", "hook..config"], "got \"hook..config\"")]
#[case::dns(&["--dns", "web hook"], "got \"web hook\"")]
#[case::ip(&["--ip", "300.0.0.1"], "got \"300.0.0.1\"")]
fn invalid_name_quoted_in_message(#[case] args: &[&str], #[case] expected: &str) {
    let scratch = Scratch::new();
    let mut all_args = vec!["--files-only", "--dir", "OUT"];
    all_args.extend_from_slice(args);

    let output = scratch.run(&all_args);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

#[test]
fn valid_options_issue_certificate() {
    let scratch = Scratch::new();
    let args = [
        "--files-only",
        "--dir=OUT",
        "-n",
        "team-a",
        "--service",
        "hook",
        "--days",
        "30",
        "--renew-days=7",
        "--dns",
        "webhook.example.org",
        "--ip",
        "127.0.0.1",
        "--ip",
        "::1",
    ];

    let first = scratch.run(&args);
    let second = scratch.run(&args);

    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "stderr: {stderr}");
    assert_eq!(scratch.kubectl_calls(), "", "kubectl ran with --files-only");
    for file in ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"] {
        assert!(scratch.out().join(file).is_file(), "{file} missing");
    }
    let cert = scratch.out().join("tls.crt");
    let day = 86_400;
    let (valid_for_29_days, _) = openssl_x509(&cert, &["-checkend", &(29 * day).to_string()]);
    assert!(valid_for_29_days, "expires within 29 days");
    let (valid_for_31_days, _) = openssl_x509(&cert, &["-checkend", &(31 * day).to_string()]);
    assert!(!valid_for_31_days, "valid for more than 30 days");
    for name in [
        "hook.team-a.svc",
        "hook.team-a.svc.cluster.local",
        "webhook.example.org",
    ] {
        let (_, stdout) = openssl_x509(&cert, &["-checkhost", name]);
        assert!(stdout.contains("does match"), "{name}: {stdout}");
    }
    for address in ["127.0.0.1", "::1"] {
        let (_, stdout) = openssl_x509(&cert, &["-checkip", address]);
        assert!(stdout.contains("does match"), "{address}: {stdout}");
    }
    let second_stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "second run: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        second_stdout.contains("serving certificate kept"),
        "second run: {second_stdout}"
    );
}

#[test]
fn long_names_fit_common_name() {
    let scratch = Scratch::new();
    let label_63 = &NAME_64[1..];

    let output = scratch.run(&[
        "--files-only",
        "--dir",
        "OUT",
        "-n",
        label_63,
        "-s",
        label_63,
    ]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let name = format!("{label_63}.{label_63}.svc");
    let (_, stdout) = openssl_x509(&scratch.out().join("tls.crt"), &["-checkhost", &name]);
    assert!(stdout.contains("does match"), "{name}: {stdout}");
}

#[rstest]
#[case::expires_within_renew_days(1, "within --renew-days 30")]
#[case::expires_before_new_certificate(
    100,
    "before a serving certificate issued now for --days 365 would"
)]
fn expiring_ca_rotated(#[case] ca_days: u32, #[case] reason: &str) {
    let scratch = Scratch::new();
    scratch.write_ca(ca_days);
    let old_ca = std::fs::read(scratch.out().join("ca.crt")).unwrap();
    let args = ["--files-only", "--dir", "OUT"];

    let first = scratch.run(&args);
    let second = scratch.run(&args);

    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("CA rotated because it expires on "),
        "stdout: {stdout}"
    );
    assert!(stdout.contains(reason), "expected {reason:?} in: {stdout}");
    let ca = scratch.out().join("ca.crt");
    let year = (365 * 86_400).to_string();
    let (ca_outlasts_certificate, _) = openssl_x509(&ca, &["-checkend", &year]);
    assert!(
        ca_outlasts_certificate,
        "the new CA expires within 365 days"
    );
    assert!(
        openssl_verify(&ca, &scratch.out().join("tls.crt")),
        "tls.crt is not signed by the new CA"
    );
    assert_eq!(
        std::fs::read(scratch.out().join("ca-previous.crt")).unwrap(),
        old_ca,
        "the old CA is not kept as ca-previous.crt"
    );
    let second_stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second_stdout.contains("CA kept"),
        "second run: {second_stdout}"
    );
    assert!(
        second_stdout.contains("serving certificate kept"),
        "second run: {second_stdout}"
    );
}

#[test]
fn ca_outlasting_certificate_kept() {
    let scratch = Scratch::new();
    scratch.write_ca(400);
    let old_ca = std::fs::read(scratch.out().join("ca.crt")).unwrap();

    let output = scratch.run(&["--files-only", "--dir", "OUT"]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CA kept"), "stdout: {stdout}");
    assert_eq!(std::fs::read(scratch.out().join("ca.crt")).unwrap(), old_ca);
    assert!(!scratch.out().join("ca-previous.crt").exists());
}

/// The start of the message for a failed read of the CA Secret, and the check it suggests.
const SECRET_READ_FAILED: (&str, &str) = (
    "kubectl failed to read Secret image-patch-system/image-patch-webhook-tls-ca, so nothing was changed",
    "kubectl auth can-i get secrets -n image-patch-system",
);

#[rstest]
#[case::context_missing("context-missing", &["--context", "nope"], SECRET_READ_FAILED, "error: context \"nope\" does not exist")]
#[case::unreachable("unreachable", &[], SECRET_READ_FAILED, "The connection to the server 127.0.0.1:6443 was refused")]
#[case::get_forbidden("get-forbidden", &[], SECRET_READ_FAILED, "Error from server (Forbidden): secrets \"image-patch-webhook-tls-ca\" is forbidden")]
#[case::webhook_config_forbidden(
    "webhook-config-forbidden",
    &[],
    (
        "kubectl failed to read MutatingWebhookConfiguration image-patch-webhook, so nothing was changed",
        "kubectl auth can-i get mutatingwebhookconfigurations",
    ),
    "Error from server (Forbidden): mutatingwebhookconfigurations.admissionregistration.k8s.io \"image-patch-webhook\" is forbidden"
)]
fn kubectl_error_changes_nothing(
    #[case] mode: &str,
    #[case] args: &[&str],
    #[case] (message, check): (&str, &str),
    #[case] kubectl_error: &str,
) {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode(mode);
    let mut all_args = vec!["--dir", "OUT"];
    all_args.extend_from_slice(args);

    let output = scratch.run(&all_args);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in: {stderr}"
    );
    assert!(
        stderr.contains(kubectl_error),
        "expected {kubectl_error:?} in: {stderr}"
    );
    assert!(stderr.contains(check), "expected {check:?} in: {stderr}");
    assert!(!stdout.contains("CA created"), "stdout: {stdout}");
    let calls = scratch.kubectl_calls();
    for verb in ["create", "apply", "patch"] {
        assert!(
            !calls
                .lines()
                .any(|call| call.split(' ').any(|word| word == verb)),
            "kubectl {verb} ran: {calls}"
        );
    }
    assert!(!scratch.out().exists(), "the output directory was created");
}

#[test]
fn missing_secrets_created() {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode("empty");

    let output = scratch.run(&[]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CA created"), "stdout: {stdout}");
    assert!(
        stdout.contains("MutatingWebhookConfiguration image-patch-webhook not found"),
        "stdout: {stdout}"
    );
    let applies = scratch
        .kubectl_calls()
        .lines()
        .filter(|call| call.starts_with("apply "))
        .count();
    assert_eq!(applies, 2, "calls: {}", scratch.kubectl_calls());
}

/// Returns the kubectl calls that write: `patch` and the `applied NAME` lines of `apply`.
fn kubectl_writes(calls: &str) -> Vec<&str> {
    calls
        .lines()
        .filter(|call| call.starts_with("applied ") || call.starts_with("patch "))
        .collect()
}

#[test]
fn cluster_writes_ca_bundle_first() {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode("cluster");

    let output = scratch.run(&[]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let calls = scratch.kubectl_calls();
    let writes = kubectl_writes(&calls);
    assert_eq!(writes.len(), 3, "calls: {calls}");
    assert!(
        writes[0].starts_with("patch mutatingwebhookconfiguration image-patch-webhook "),
        "calls: {calls}"
    );
    assert_eq!(
        writes[1], "applied image-patch-webhook-tls-ca",
        "calls: {calls}"
    );
    assert_eq!(
        writes[2], "applied image-patch-webhook-tls",
        "calls: {calls}"
    );
    let first_write = calls
        .lines()
        .position(|call| call.starts_with("patch "))
        .unwrap();
    for right in [
        "auth can-i get secrets/image-patch-webhook-tls -n image-patch-system",
        "auth can-i create secrets -n image-patch-system",
        "auth can-i patch mutatingwebhookconfigurations/image-patch-webhook",
    ] {
        let checked_at = calls.lines().position(|call| call == right);
        assert!(
            checked_at.is_some_and(|at| at < first_write),
            "{right:?} not checked before the first write: {calls}"
        );
    }
}

#[rstest]
#[case::webhook_config_patch(
    "patch mutatingwebhookconfigurations/image-patch-webhook",
    "kubectl auth can-i patch mutatingwebhookconfigurations/image-patch-webhook"
)]
#[case::secret_create(
    "create secrets",
    "kubectl auth can-i create secrets -n image-patch-system"
)]
fn missing_right_changes_nothing(#[case] denied: &str, #[case] named: &str) {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode("cluster");
    scratch.deny_right(denied);

    let output = scratch.run(&["--rotate-ca", "--dir", "OUT"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("lacks rights that this run needs, so nothing was changed"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains(named), "expected {named:?} in: {stderr}");
    let calls = scratch.kubectl_calls();
    assert_eq!(kubectl_writes(&calls), Vec::<&str>::new(), "calls: {calls}");
    assert!(!scratch.out().exists(), "the output directory was created");
}

#[test]
fn ca_bundle_patch_failure_reported() {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode("cluster");
    scratch.fail_call("patch mutatingwebhookconfiguration ");

    let output = scratch.run(&["--rotate-ca"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(
            "kubectl failed to write the caBundle of mutatingwebhookconfiguration/image-patch-webhook"
        ),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("Error from server (Forbidden)"),
        "kubectl's error is missing: {stderr}"
    );
    assert!(
        stderr.contains("nothing was changed in the cluster"),
        "stderr: {stderr}"
    );
    assert!(
        stderr
            .contains("kubectl auth can-i patch mutatingwebhookconfigurations/image-patch-webhook"),
        "stderr: {stderr}"
    );
    let calls = scratch.kubectl_calls();
    assert!(
        !calls.contains("applied image-patch-webhook-tls"),
        "a Secret was written: {calls}"
    );
}

#[test]
fn tls_secret_failure_reports_changes() {
    let scratch = Scratch::new();
    scratch.set_kubectl_mode("cluster");
    scratch.fail_call("create secret tls ");

    let output = scratch.run(&["--rotate-ca"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(
            "kubectl failed to write the Secret image-patch-system/image-patch-webhook-tls"
        ),
        "stderr: {stderr}"
    );
    for changed in [
        "  caBundle of mutatingwebhookconfiguration/image-patch-webhook\n",
        "  Secret image-patch-system/image-patch-webhook-tls-ca\n",
    ] {
        assert!(
            stderr.contains(changed),
            "expected {changed:?} in: {stderr}"
        );
    }
    assert!(
        stderr.contains("run this script again without --rotate-ca"),
        "stderr: {stderr}"
    );
    let calls = scratch.kubectl_calls();
    assert!(
        !calls
            .lines()
            .any(|call| call == "applied image-patch-webhook-tls"),
        "the TLS Secret was written: {calls}"
    );
}

#[rstest]
#[case::ca("ca.crt", "the CA certificate")]
#[case::previous_ca("ca-previous.crt", "the previous CA certificate")]
fn unreadable_ca_file_stops(#[case] file: &str, #[case] what: &str) {
    let scratch = Scratch::new();
    scratch.write_ca(400);
    let garbage = b"garbage\n";
    std::fs::write(scratch.out().join(file), garbage).unwrap();

    let output = scratch.run(&["--files-only", "--dir", "OUT"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let path = scratch.out().join(file);
    let expected = format!("cannot read {what} from {}", path.display());
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(
        stderr.contains("remove it, or pass --rotate-ca"),
        "stderr: {stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "{file} was changed");
    assert!(
        !scratch.out().join("ca-bundle.crt").exists(),
        "ca-bundle.crt was written"
    );
    assert!(
        !scratch.out().join("tls.crt").exists(),
        "tls.crt was written"
    );
}

#[test]
fn unreadable_ca_replaced_on_rotation() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.out()).unwrap();
    std::fs::write(scratch.out().join("ca.crt"), "garbage\n").unwrap();
    std::fs::write(scratch.out().join("ca.key"), "garbage\n").unwrap();

    let output = scratch.run(&["--files-only", "--dir", "OUT", "--rotate-ca"]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("discarded the CA certificate from"),
        "stdout: {stdout}"
    );
    assert!(!stdout.contains("expires on unknown"), "stdout: {stdout}");
    assert!(
        !scratch.out().join("ca-previous.crt").exists(),
        "the garbage was kept as ca-previous.crt"
    );
    let bundle = std::fs::read_to_string(scratch.out().join("ca-bundle.crt")).unwrap();
    assert!(!bundle.contains("garbage"), "ca-bundle.crt: {bundle}");
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        1,
        "ca-bundle.crt: {bundle}"
    );
    assert!(
        openssl_verify(
            &scratch.out().join("ca.crt"),
            &scratch.out().join("tls.crt")
        ),
        "tls.crt is not signed by the new CA"
    );
}
