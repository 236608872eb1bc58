//! The container image of `Dockerfile`, built and run under Debian's podman with runc (`bash
//! tests/run.sh` installs both and exports `JWTGATE_PODMAN` and `JWTGATE_RUNC`). No base image
//! can be pulled here, so the Dockerfile's build stage is replaced (`--build-context build=DIR`)
//! by a directory holding what that stage produces, around a statically linked jwtgate this test
//! compiles itself (`+crt-static`, `--target x86_64-unknown-linux-gnu`, a debug build in
//! `target/container/`: a target directory of its own, so that it needs no lock the outer `cargo
//! test` holds; `JWTGATE_STATIC_BIN` names a ready one instead); the final stage is the file's.
//! Then:
//! - the image holds only the binary, the CA roots and two directories (no shell, no libc), owned
//!   by root except the data directory; it runs as 65532:65532 with `serve --config
//!   /etc/jwtgate/jwtgate.yaml` and exposes 9001-9003;
//! - run as the Helm chart runs it (read-only root filesystem with no writable tmpfs, every
//!   capability dropped, no-new-privileges, the config mounted read-only at `/etc/jwtgate`, a
//!   volume at `/var/lib/jwtgate`) with its ports published on 127.0.0.1, it answers a real
//!   `envoy.service.auth.v3.Authorization/Check`: OK for a valid token, UNAUTHENTICATED for a
//!   badly signed one; its process has uid and gid 65532, no capabilities, `NoNewPrivs`, a
//!   read-only `/`, its revocation store in the volume; `/bin/sh` cannot be run in it; SIGTERM
//!   (`podman stop`) ends it cleanly (exit 0, not killed) although it is PID 1;
//! - its runtime runs one worker thread per CPU of its quota (`--cpus=1`: one), per host CPU
//!   without one (`jwtgate_worker_threads`);
//! - on the host network, the static binary resolves a host name through the container's
//!   `/etc/hosts` (glibc's `files` service is part of libc since 2.34) and fetches its keys from a
//!   JWKS URL with that name.
//!
//! Podman keeps everything (images, containers, volumes, state) in a private store under
//! `CARGO_TARGET_TMPDIR`, emptied and removed afterwards, and is configured by a
//! `CONTAINERS_CONF` written there: runc (crun fails on these hosts' hybrid cgroups) and ulimits
//! within the hard `nofile` limit of 20000 (podman's default asks for more and runc fails).
//! Runs as root.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// The Linux user and group the image runs as.
const UID: u32 = 65532;
/// Where the image expects its config directory and its data.
const CONFIG_DIR: &str = "/etc/jwtgate";
const DATA_DIR: &str = "/var/lib/jwtgate";
/// Every podman command but the build is bounded by this.
const PODMAN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` (stdin closed, output captured) and fails the test if it takes longer than `limit`.
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
        rx
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            panic!(
                "{what} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A daemon it started could hold the pipes open: read what came, never wait for the end.
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// The static jwtgate: `JWTGATE_STATIC_BIN`, else built now (a debug build without debug info:
/// a few minutes the first time, seconds after).
fn static_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JWTGATE_STATIC_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "JWTGATE_STATIC_BIN: no {}", path.display());
        return path;
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("container");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run_within(
        Command::new(cargo)
            .args(["build", "--quiet", "--locked", "--bin", "jwtgate"])
            .args(["--target", "x86_64-unknown-linux-gnu"])
            .current_dir(repo(""))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_PROFILE_DEV_DEBUG", "0"),
        Duration::from_secs(30 * 60),
    );
    assert!(
        out.status.success(),
        "static build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join("x86_64-unknown-linux-gnu/debug/jwtgate");
    assert!(bin.is_file(), "no {}", bin.display());
    bin
}

/// Podman with a private store and configuration in a temporary directory; every container and
/// image in it is removed on drop, then the directory.
struct Podman {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        let bin = tools::PODMAN.path();
        let runc = tools::RUNC.path();
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             log_driver = \"k8s-file\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             [engine.runtimes]\n\
             runc = [{:?}]\n",
            runc.display().to_string()
        );
        std::fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Self { bin, dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(&self.bin);
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        run_within(&mut self.command(args), PODMAN_LIMIT)
    }

    /// What `podman ARGS` printed, asserting it succeeded.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `podman inspect` of one object, as JSON.
    fn inspect(&self, kind: &str, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&[kind, "inspect", name])).unwrap();
        v[0].clone()
    }

    /// Builds the Dockerfile's image around `binary`: its build stage replaced by a directory
    /// holding what that stage produces (`/out`), its final stage as it is. The tag.
    fn build(&self, binary: &Path) -> String {
        let stage = self.dir.path().join("build-stage");
        let rootfs = stage.join("out/rootfs");
        for d in ["etc/ssl/certs", "etc/jwtgate", "var/lib"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::create_dir_all(stage.join("out/data")).unwrap();
        std::fs::copy(binary, rootfs.join("jwtgate")).unwrap();
        // The build stage copies its Debian image's CA bundle; this is Debian's too. jwtgate
        // cannot start without one (its HTTP client loads the system's roots).
        let roots = "/etc/ssl/certs/ca-certificates.crt";
        std::fs::copy(roots, rootfs.join(&roots[1..]))
            .unwrap_or_else(|e| panic!("{roots} (Debian's ca-certificates): {e}"));
        // What the build stage's `cp` and `mkdir` give, whatever the umask here.
        set_modes(&stage, 0o755);
        set_mode(&rootfs.join(&roots[1..]), 0o644);
        let tag = format!("localhost/jwtgate-test:{}", std::process::id());
        let dockerfile = repo("Dockerfile").display().to_string();
        let stage_context = format!("build={}", stage.display());
        // The main context: nothing from it reaches the final stage.
        let context = self.dir.path().join("context");
        std::fs::create_dir(&context).unwrap();
        let context = context.display().to_string();
        let started = Instant::now();
        self.ok(&[
            "build",
            "--quiet",
            "--pull=never",
            "--build-context",
            &stage_context,
            "--file",
            &dockerfile,
            "--tag",
            &tag,
            &context,
        ]);
        eprintln!("image built in {:?}", started.elapsed());
        tag
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [
            &["rm", "--all", "--force", "--volumes", "--time", "0"][..],
            &["rmi", "--all", "--force"],
        ] {
            let _ = run_within(&mut self.command(args), PODMAN_LIMIT);
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `mode` on `dir` and everything below it.
fn set_modes(dir: &Path, mode: u32) {
    set_mode(dir, mode);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            set_modes(&path, mode);
        } else {
            set_mode(&path, mode);
        }
    }
}

/// Every entry under `root` but `root` itself: (path from `/`, `d` or `f` and mode, uid, gid).
fn tree(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let m = std::fs::symlink_metadata(&path).unwrap();
        let kind = if m.is_dir() {
            "d"
        } else if m.is_file() {
            "f"
        } else {
            "other"
        };
        let name = format!("/{}", path.strip_prefix(root).unwrap().display());
        out.push((name, format!("{kind} {:o}", m.mode() & 0o7777), m.uid(), m.gid()));
        if m.is_dir() {
            tree(root, &path, out);
        }
    }
}

/// A container, removed (with its anonymous volumes) on drop; when the test is failing, its log
/// is printed first.
struct Container<'a> {
    podman: &'a Podman,
    name: String,
}

impl<'a> Container<'a> {
    /// `podman run --detach` of `image` with the chart's hardening, the config directory `config`
    /// mounted read-only and an anonymous volume at the data directory, plus `extra` arguments.
    fn run(podman: &'a Podman, name: &str, image: &str, config: &Path, extra: &[&str]) -> Self {
        let name = format!("jwtgate-test-{}-{name}", std::process::id());
        let mount = format!("{}:{CONFIG_DIR}:ro", config.display());
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &name,
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--volume",
            &mount,
            "--volume",
            DATA_DIR,
        ];
        args.extend(extra);
        args.push(image);
        // Removed even when `run` itself fails half-way (created, not started).
        let container = Self {
            podman,
            name: name.clone(),
        };
        podman.ok(&args);
        container
    }

    fn logs(&self) -> String {
        let out = self.podman.output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self) -> Value {
        self.podman.inspect("container", &self.name)
    }

    /// Its process, as the host numbers it.
    fn pid(&self) -> u32 {
        let pid = self.inspect()["State"]["Pid"].as_u64().unwrap();
        assert!(pid > 0, "{} is not running", self.name);
        u32::try_from(pid).unwrap()
    }

    /// Waits (bounded: 30 s) until `GET http://ADDR/readyz` answers 200.
    async fn wait_ready(&self, http: &str) {
        let url = format!("http://{http}/readyz");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 1.. {
            if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            if attempt % 20 == 0 {
                let state = self.inspect()["State"]["Status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert_eq!(state, "running", "{} stopped", self.name);
            }
            assert!(Instant::now() < deadline, "{} not ready at {url} within 30s", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of {}:\n{}", self.name, self.logs());
        }
        let _ = self
            .podman
            .output(&["rm", "--force", "--volumes", "--time", "0", &self.name]);
    }
}

/// A config directory `name` (readable by the image's user) holding `jwtgate.yaml` and `files`.
fn config_dir(podman: &Podman, name: &str, yaml: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = podman.dir.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("jwtgate.yaml"), yaml).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    set_modes(&dir, 0o644);
    set_mode(&dir, 0o755);
    dir
}

/// A `listen:` value: gRPC, HTTP and admin on these ports of `ip`.
fn listen(ip: &str, [grpc, http, admin]: [u16; 3]) -> String {
    format!("{{ grpc: \"{ip}:{grpc}\", http: \"{ip}:{http}\", admin: \"{ip}:{admin}\" }}")
}

/// A config for the container: these `listen` addresses, a quick shutdown, revocations in the
/// data directory, and one provider `corp` of `issuer` with `keys` (its `jwks_*` line).
fn config_yaml(listen: &str, issuer: &str, keys: &str) -> String {
    let lines = [
        format!("listen: {listen}"),
        "shutdown_drain: 0s".into(),
        "shutdown_grace: 2s".into(),
        format!("revocation: {{ path: {DATA_DIR} }}"),
        "providers:".into(),
        "  - name: corp".into(),
        format!("    issuer: \"{issuer}\""),
        format!("    {keys}"),
        "    audiences: [api]".into(),
        "    claims_to_headers: { sub: x-jwt-sub }".into(),
    ];
    lines.join("\n") + "\n"
}

/// One line of `/proc/PID/status`, e.g. `Uid`: its fields.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_image_answers_checks_as_non_root_on_a_read_only_root() {
    let podman = Podman::new();
    let binary = static_binary();
    let image = podman.build(&binary);

    // The image: its config and every file in it.
    let config = &podman.inspect("image", &image)["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], json!(["/jwtgate"]), "{config}");
    assert_eq!(
        config["Cmd"],
        json!(["serve", "--config", "/etc/jwtgate/jwtgate.yaml"]),
        "{config}"
    );
    let mut ports: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
    ports.sort();
    assert_eq!(ports, ["9001/tcp", "9002/tcp", "9003/tcp"], "{config}");
    let root = PathBuf::from(podman.ok(&["image", "mount", &image]));
    let mut files = Vec::new();
    tree(&root, &root, &mut files);
    podman.ok(&["image", "unmount", &image]);
    files.sort();
    let dir = |p: &str, uid| (p.to_owned(), "d 755".to_owned(), uid, uid);
    let file = |p: &str, mode: &str| (p.to_owned(), format!("f {mode}"), 0, 0);
    assert_eq!(
        files,
        [
            dir("/etc", 0),
            dir("/etc/jwtgate", 0),
            dir("/etc/ssl", 0),
            dir("/etc/ssl/certs", 0),
            file("/etc/ssl/certs/ca-certificates.crt", "644"),
            file("/jwtgate", "755"),
            dir("/var", 0),
            dir("/var/lib", 0),
            dir("/var/lib/jwtgate", UID),
        ],
        "the image's files (path, kind and mode, uid, gid)"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let issuer = runtime.block_on(rsa_issuer());

    // The image's own ports, published on loopback; keys from a file beside the config.
    let (grpc, http) = (free_port(), free_port());
    let jwks = json!({ "keys": [jwk("rsa-a.pem", Algorithm::RS256, "rsa")] }).to_string();
    let published_config = config_dir(
        &podman,
        "published",
        &config_yaml(
            &listen("0.0.0.0", [9001, 9002, 9003]),
            "https://issuer.jwtgate.test/",
            "jwks_file: jwks.json",
        ),
        &[("jwks.json", jwks)],
    );
    let (grpc_port, http_port) = (format!("127.0.0.1:{grpc}:9001"), format!("127.0.0.1:{http}:9002"));
    let published = Container::run(
        &podman,
        "published",
        &image,
        &published_config,
        &["--publish", &grpc_port, "--publish", &http_port],
    );

    // The host's network; keys from a JWKS URL whose host name only /etc/hosts knows.
    let (host_grpc, host_http, host_admin) = (free_port(), free_port(), free_port());
    let host_config = config_dir(
        &podman,
        "host",
        &config_yaml(
            &listen("127.0.0.1", [host_grpc, host_http, host_admin]),
            &issuer.url(),
            &format!("jwks_uri: \"http://jwks.jwtgate.test:{}/jwks\"", issuer.addr.port()),
        ),
        &[],
    );
    let host = Container::run(
        &podman,
        "host",
        &image,
        &host_config,
        &["--network=host", "--add-host=jwks.jwtgate.test:127.0.0.1", "--cpus=1"],
    );

    runtime.block_on(bounded(Duration::from_secs(90), async {
        published.wait_ready(&format!("127.0.0.1:{http}")).await;
        let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        let good = rsa_token("https://issuer.jwtgate.test/", json!({}));
        let a = check(&mut client, bearer(&good)).await.unwrap();
        assert_eq!(a.grpc_code, 0, "a valid token: {a:?}");
        assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("alice"), "{a:?}");
        let forged = sign(
            &pem("rsa-b.pem"),
            Algorithm::RS256,
            Some("rsa"),
            claims("https://issuer.jwtgate.test/"),
        );
        let a = check(&mut client, bearer(&forged)).await.unwrap();
        assert_eq!(
            (a.grpc_code, a.http_status),
            (16, Some(401)),
            "another key's token: {a:?}"
        );
        assert_eq!(a.reason(), "invalid signature", "{a:?}");

        host.wait_ready(&format!("127.0.0.1:{host_http}")).await;
        assert!(issuer.jwks_hits() >= 1, "the JWKS was fetched through its host name");
        let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{host_grpc}"))
            .await
            .unwrap();
        let a = check(&mut client, bearer(&rsa_token(&issuer.url(), json!({}))))
            .await
            .unwrap();
        assert_eq!(a.grpc_code, 0, "a valid token, keys by URL: {a:?}");

        // One worker per CPU the container may use: its CPU quota, not the host's cores.
        let host_cpus = std::thread::available_parallelism().unwrap().get() as f64;
        let workers = |m: &std::collections::BTreeMap<String, f64>| m.get("jwtgate_worker_threads").copied();
        let unlimited = scrape(format!("127.0.0.1:{http}")).await;
        assert_eq!(
            workers(&unlimited),
            Some(host_cpus),
            "no --cpus: one worker per host CPU"
        );
        let limited = scrape(format!("127.0.0.1:{host_http}")).await;
        assert_eq!(workers(&limited), Some(1.0), "--cpus=1 on a host of {host_cpus} CPUs");
    }));

    // The running process: who it is, what it may do, what it can write.
    let pid = published.pid();
    assert_eq!(status_field(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(status_field(pid, "Gid"), "65532 65532 65532 65532");
    assert_eq!(status_field(pid, "Groups"), "65532");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let options = |at: &str| {
        mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .rfind(|f| f.len() > 5 && f[4] == at)
            .map(|f| f[5].split(',').map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no mount at {at}:\n{mounts}"))
    };
    assert!(
        options("/").contains(&"ro".to_owned()),
        "/ is not read-only: {:?}",
        options("/")
    );
    assert!(
        options(CONFIG_DIR).contains(&"ro".to_owned()),
        "{CONFIG_DIR}: {:?}",
        options(CONFIG_DIR)
    );
    assert!(
        options(DATA_DIR).contains(&"rw".to_owned()),
        "{DATA_DIR}: {:?}",
        options(DATA_DIR)
    );
    let store = std::fs::metadata(format!("/proc/{pid}/root{DATA_DIR}/revocations.redb")).unwrap();
    assert_eq!((store.uid(), store.gid()), (UID, UID), "the revocation store's owner");
    let exec = podman.output(&["exec", &published.name, "/bin/sh", "-c", "true"]);
    let err = String::from_utf8_lossy(&exec.stderr);
    assert!(
        !exec.status.success() && err.contains("no such file"),
        "the image has a shell: {err}"
    );
    let version = podman.ok(&["exec", &published.name, "/jwtgate", "--version"]);
    assert!(version.starts_with("jwtgate "), "{version}");

    // SIGTERM reaches jwtgate as PID 1 and it exits on its own, well before podman's SIGKILL.
    let started = Instant::now();
    podman.ok(&["stop", "--time", "20", &published.name]);
    let stopped = started.elapsed();
    let state = &published.inspect()["State"];
    assert_eq!(state["ExitCode"], 0, "exit after SIGTERM: {state}");
    assert!(stopped < Duration::from_secs(15), "stopped only after {stopped:?}");
}
