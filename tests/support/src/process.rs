//! Child processes that die with the test.
//!
//! Each process is spawned by one long-lived thread, in a process group of its
//! own, with stdout and stderr appended to a log file. In the child, before
//! `exec`, `PR_SET_PDEATHSIG` makes the kernel send `SIGKILL` when the
//! spawning thread ends. That thread lives as long as the test binary, so a test
//! binary that is interrupted or killed takes its processes along, even those
//! held in a `static` whose `Drop` never runs.
//!
//! Dropping a [`ManagedProcess`] kills its process group and reaps the child.
//! When the current thread is panicking, the tail of the log is printed first.

use crate::{Error, Result};
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// Lines of a log printed when a test fails or a component does not start.
const LOG_TAIL_LINES: usize = 60;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// A child process of the stack, killed with its process group on drop.
pub(crate) struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Spawns `command` as the component `name`, logging to `log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let log_file = File::create(log)
            .map_err(|error| Error::io(format!("cannot create {}", log.display()), error))?;
        let log_clone = log_file
            .try_clone()
            .map_err(|error| Error::io(format!("cannot reopen {}", log.display()), error))?;
        command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_clone)
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the test process exited"));
                }
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let child = spawn_from_keeper_thread(command)
            .map_err(|error| Error::io(format!("cannot start {program} ({name})"), error))?;
        tracing::info!(component = name, pid = child.id(), log = %log.display(), "started");
        Ok(ManagedProcess {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// Returns the component name given at spawn.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Returns the process id, until the process is stopped.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns the log file that receives the process's stdout and stderr.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Returns the exit status if the process has already exited.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Returns the last lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        read_tail(&self.log, LOG_TAIL_LINES)
    }

    /// Polls `probe` every 100 ms until it returns true, failing when the process
    /// exits first or `timeout` passes.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(self.startup_error(format!("exited with {status}")));
            }
            if probe().await {
                tracing::info!(component = %self.name, "ready");
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.startup_error(format!("not ready after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Builds an [`Error::Startup`] for this process with the tail of its log.
    pub(crate) fn startup_error(&self, reason: String) -> Error {
        Error::Startup {
            component: self.name.clone(),
            reason,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// Kills the process group and reaps the child. Calling it again does nothing.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The child leads its own process group, whose id is its pid.
        let group = child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = child.kill();
        match child.wait() {
            Ok(status) => tracing::debug!(component = %self.name, %status, "stopped"),
            Err(error) => tracing::warn!(component = %self.name, %error, "cannot reap"),
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail(&self.name, &self.log);
        }
        self.stop();
    }
}

/// Prints the tail of a component's log to stderr, for a failing test.
pub(crate) fn print_log_tail(name: &str, log: &Path) {
    eprintln!(
        "----- {name}: last {LOG_TAIL_LINES} lines of {} -----\n{}",
        log.display(),
        read_tail(log, LOG_TAIL_LINES)
    );
}

/// Reads the last `lines` lines of a file, at most the last 64 KiB of it.
fn read_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns `command` from a thread that lives until the test binary exits, so
/// that `PR_SET_PDEATHSIG` fires only when the whole test binary is gone.
fn spawn_from_keeper_thread(command: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<std::sync::Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testsupport-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the process spawner thread");
        std::sync::Mutex::new(sender)
    });
    let (reply, result) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the process spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| std::io::Error::other("the process spawner thread is gone"))?
}

/// The environment variable that keeps state directories and logs after the
/// stack stops.
pub const KEEP_STACK_ENV: &str = "IPC_KEEP_STACK";

/// Returns whether `IPC_KEEP_STACK` is set to keep state directories.
pub(crate) fn keep_stack() -> bool {
    std::env::var_os(KEEP_STACK_ENV).is_some_and(|value| !value.is_empty() && value != "0")
}

/// Directories and process groups that the exit handler cleans up.
static AT_EXIT: std::sync::Mutex<Vec<(PathBuf, Vec<u32>)>> = std::sync::Mutex::new(Vec::new());

/// Kills the process groups of `pids` and removes `dir` when the test binary
/// exits normally, for stacks held in a `static` that is never dropped.
pub(crate) fn remove_at_exit(dir: PathBuf, pids: Vec<u32>) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    AT_EXIT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((dir, pids));
    REGISTERED.call_once(|| {
        // SAFETY: the handler is a plain function that lives for the whole program.
        unsafe {
            libc::atexit(clean_up_at_exit);
        }
    });
}

extern "C" fn clean_up_at_exit() {
    let Ok(entries) = AT_EXIT.lock() else {
        return;
    };
    for (dir, pids) in entries.iter() {
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(*pid as libc::pid_t), libc::SIGKILL);
            }
        }
        if !keep_stack() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
