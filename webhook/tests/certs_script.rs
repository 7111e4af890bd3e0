//! The certs script's option checks. Each invalid value is rejected with exit status 2 and
//! a message that names the option and the value, before the script writes a file or runs
//! kubectl. A valid run issues a certificate with the requested names and validity.
//!
//! A stand-in `kubectl` first on PATH records its calls, so that a rejected run that still
//! reached for the cluster fails the test without touching a real one.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rstest::rstest;

/// A Kubernetes name one character longer than a DNS label may be.
const NAME_64: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

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
        std::fs::write(
            &kubectl,
            "#!/bin/sh\necho \"$@\" >>\"$(dirname \"$0\")/../kubectl-calls\"\n",
        )
        .unwrap();
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
