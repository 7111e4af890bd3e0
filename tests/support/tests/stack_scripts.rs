//! Checks of `tests/stack/start.sh` and `tests/stack/stop.sh` that need no running stack:
//! their options, the state directories they accept, the processes that stop.sh signals,
//! and the ports that start.sh chooses.
//!
//! start.sh runs with no `go` on PATH and an empty tools cache, so a start.sh that got
//! past its checks would fail at the tool build instead of starting a stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stack")
        .join(name)
}

/// A scratch directory that is also TMPDIR and the tools cache of the scripts it runs.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the stack script `name` with `args` in the scratch directory, with PATH
    /// stripped of every directory that contains `go`.
    fn run(&self, name: &str, args: &[&Path]) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path_without_go = std::env::join_paths(
            std::env::split_paths(&path).filter(|dir| !dir.join("go").exists()),
        )
        .expect("PATH entries join again");
        Command::new("bash")
            .arg(script(name))
            .args(args)
            .env("PATH", path_without_go)
            .env("TMPDIR", self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env_remove("IPC_STACK_DIR")
            .current_dir(self.dir.path())
            .output()
            .expect("bash runs")
    }
}

/// A `sleep` in a process group of its own whose parent has exited, like the processes
/// that start.sh starts. It is killed on drop.
struct Sleeper {
    pid: i32,
}

impl Sleeper {
    fn start() -> Self {
        let output = Command::new("bash")
            .args([
                "-c",
                "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
            ])
            .output()
            .expect("bash runs");
        let pid = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("bash prints the process id");
        Self { pid }
    }

    /// Returns the line that start.sh writes to the pids file for this process as `name`.
    fn pids_line(&self, name: &str) -> String {
        format!("{name} {} {}\n", self.pid, self.start_time())
    }

    /// Returns the start time of the process in clock ticks since boot, field 22 of
    /// /proc/PID/stat.
    fn start_time(&self) -> String {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("the sleeper is running");
        let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        after_name
            .split(' ')
            .nth(19)
            .expect("stat has field 22")
            .to_owned()
    }

    fn is_running(&self) -> bool {
        // SAFETY: kill with signal 0 only checks that the process exists.
        unsafe { libc::kill(self.pid, 0) == 0 }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        if self.is_running() {
            // SAFETY: the process is the sleeper that this test started.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Writes a state directory as start.sh leaves it: the marker and a pids file.
fn write_state_dir(dir: &Path, pids: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(".ipc-stack-state"), "marker\n").unwrap();
    std::fs::write(dir.join("pids"), pids).unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_stderr_contains(output: &Output, expected: &str) {
    let stderr = stderr(output);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn start_help_prints_usage() {
    let scratch = Scratch::new();

    let output = scratch.run("start.sh", &[Path::new("--help")]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("Usage: tests/stack/start.sh [STATE_DIR]"),
        "stdout: {stdout}"
    );
    assert_eq!(entries(scratch.dir.path()), Vec::<String>::new());
}

#[test]
fn start_unknown_option_rejected() {
    let scratch = Scratch::new();

    let output = scratch.run("start.sh", &[Path::new("--bogus")]);

    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "unknown option \"--bogus\"");
    assert_eq!(entries(scratch.dir.path()), Vec::<String>::new());
}

#[test]
fn start_foreign_dir_left_alone() {
    let scratch = Scratch::new();
    let dir = scratch.path("notes");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me\n").unwrap();

    let output = scratch.run("start.sh", &[&dir]);

    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "is not empty and has no .ipc-stack-state file");
    assert_eq!(entries(&dir), ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "keep me\n"
    );
}

#[test]
fn start_file_rejected() {
    let scratch = Scratch::new();
    let file = scratch.path("file");
    std::fs::write(&file, "keep me\n").unwrap();

    let output = scratch.run("start.sh", &[&file]);

    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "exists and is not a directory");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
}

#[test]
fn start_running_stack_rejected() {
    let scratch = Scratch::new();
    let sleeper = Sleeper::start();
    let state = scratch.path("stack");
    write_state_dir(&state, &sleeper.pids_line("etcd"));

    let output = scratch.run("start.sh", &[&state]);

    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "a stack is already running");
    assert!(sleeper.is_running(), "the recorded process was stopped");
    assert_eq!(entries(&state), [".ipc-stack-state", "pids"]);
}

#[test]
fn stop_foreign_dir_rejected() {
    let scratch = Scratch::new();
    let sleeper = Sleeper::start();
    let dir = scratch.path("notes");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("pids"), sleeper.pids_line("etcd")).unwrap();

    let output = scratch.run("stop.sh", &[&dir]);

    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "is not the state directory of a stack");
    assert!(
        sleeper.is_running(),
        "a process of another directory was stopped"
    );
    assert!(dir.join("pids").exists(), "the pids file was deleted");
}

#[test]
fn stop_reused_pid_left_alone() {
    let scratch = Scratch::new();
    let sleeper = Sleeper::start();
    let state = scratch.path("stack");
    // The start time of the recorded process differs, as after a reboot.
    write_state_dir(&state, &format!("etcd {} 1\n", sleeper.pid));

    let output = scratch.run("stop.sh", &[&state]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_stderr_contains(
        &output,
        &format!(
            "process {} is no longer etcd of this stack; left alone",
            sleeper.pid
        ),
    );
    assert!(sleeper.is_running(), "a reused process id was stopped");
}

#[test]
fn stop_recorded_process_stopped() {
    let scratch = Scratch::new();
    let sleeper = Sleeper::start();
    let state = scratch.path("stack");
    write_state_dir(&state, &sleeper.pids_line("etcd"));

    let output = scratch.run("stop.sh", &[&state]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(!sleeper.is_running(), "the recorded process still runs");
    assert!(!state.join("pids").exists(), "the pids file stayed");
    assert!(
        state.join(".ipc-stack-state").exists(),
        "the state directory was emptied"
    );
}

#[test]
fn stop_unknown_option_rejected() {
    let scratch = Scratch::new();

    let output = scratch.run("stop.sh", &[Path::new("--bogus")]);

    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    assert_stderr_contains(&output, "unknown option \"--bogus\"");
}

#[test]
fn free_ports_below_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ephemeral_first: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let command = format!("source '{}' && free_ports 50", script("lib.sh").display());

    let output = Command::new("bash")
        .args(["-c", &command])
        .output()
        .expect("bash runs");

    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        stderr(&output)
    );
    let mut ports: Vec<u16> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|port| port.parse().expect("a port number"))
        .collect();
    assert_eq!(ports.len(), 50, "ports: {ports:?}");
    if ephemeral_first >= 11_000 {
        for port in &ports {
            assert!(
                (10_000..ephemeral_first).contains(port),
                "port {port} is outside 10000..{ephemeral_first}"
            );
        }
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 50, "a port was returned twice");
}
