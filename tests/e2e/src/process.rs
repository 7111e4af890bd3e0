//! The product's binaries, run as child processes as their Deployment or CronJob
//! would run them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// File names of the two product binaries.
const WEBHOOK_BINARY: &str = "image-patch-webhook";
const SCANNER_BINARY: &str = "image-patch-scanner";

/// Paths of the built webhook and scanner binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The admission webhook server.
    pub webhook: PathBuf,
    /// The scanner, one scan per run.
    pub scanner: PathBuf,
}

impl Binaries {
    /// Finds the binaries in `IPC_BIN_DIR`, or else in the Cargo profile directory
    /// of the running executable (`target/debug` for a test in `target/debug/deps`).
    ///
    /// `cargo test --workspace` builds them; `cargo test -p image-patch-e2e` alone
    /// does not, which is why the error names the build command.
    pub fn locate() -> Result<Binaries> {
        let candidates: Vec<PathBuf> = match std::env::var_os("IPC_BIN_DIR") {
            Some(dir) => vec![PathBuf::from(dir)],
            None => {
                let exe = std::env::current_exe().context("cannot find the running executable")?;
                exe.ancestors().skip(1).take(2).map(Path::to_path_buf).collect()
            }
        };
        for dir in &candidates {
            let webhook = dir.join(WEBHOOK_BINARY);
            let scanner = dir.join(SCANNER_BINARY);
            if webhook.is_file() && scanner.is_file() {
                return Ok(Binaries { webhook, scanner });
            }
        }
        bail!(
            "{WEBHOOK_BINARY} and {SCANNER_BINARY} not found in {candidates:?}: run \
             `cargo build -p image-patch-webhook -p image-patch-scanner` with the same profile \
             first, or set IPC_BIN_DIR to their directory"
        )
    }
}

/// A child process that is stopped with SIGTERM when dropped, and killed by the
/// kernel when the process that started it dies.
pub struct ChildProcess {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: std::process::Command, log: &Path) -> Result<ChildProcess> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(ChildProcess { name: name.to_owned(), child, log: log.to_owned() })
    }

    /// Returns the process's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Returns whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to 10 s for a graceful exit, then kills the process.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill with a pid of our own child has no memory effects.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status.with_context(|| format!("cannot wait for {}", self.name))?;
            }
            Err(_) => {
                self.child.kill().await.ok();
                bail!("{} did not stop within 10 s of SIGTERM and was killed", self.name);
            }
        }
        Ok(())
    }

    /// Prints the last lines of the log to stderr.
    pub fn print_log_tail(&self, lines: usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        eprintln!("--- last {} lines of {} ({}) ---", all.len() - start, self.name, self.log.display());
        for line in &all[start..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tail(40);
        }
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            // SAFETY: as in `stop`.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
