//! The scanner binary as the CronJob starts it, without a cluster.

use std::process::Command;

#[test]
fn unreachable_api_server_exits_1() {
    let directory = tempfile::tempdir().unwrap();
    // A loopback port that was just free: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = directory.path().join("config");
    let document = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:{port}\"}}}}]\n\
         users: [{{name: u, user: {{token: not-a-secret}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
    );
    std::fs::write(&kubeconfig, document).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_image-patch-scanner"))
        .arg("--dry-run")
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("scan failed"), "{stderr}");
}

#[test]
fn invalid_flags_exit_2() {
    let cases: [&[&str]; 3] = [
        &["--namespace-selector", "==="],
        &["--namespace", "Bad_NS"],
        &["--insecure-registry", "https://127.0.0.1:5000"],
    ];
    for flags in cases {
        // The flags are checked before any API server is asked, so no kubeconfig is needed.
        let output = Command::new(env!("CARGO_BIN_EXE_image-patch-scanner"))
            .args(flags)
            .arg("--dry-run")
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(flags[0]), "the error names the flag: {stderr}");
    }
}
