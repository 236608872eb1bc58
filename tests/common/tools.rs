//! Where the external tests find the tools they run, by one rule: the tool's environment
//! variable (which `tests/run.sh` exports after installing it), else its name on `PATH`, else
//! where it usually is (absolute, or inside the repository: `.venv/`, `.tools/`). Without one,
//! the test fails saying how to get it.

use std::path::{Path, PathBuf};

use super::repo;

/// One outside tool.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The environment variable that names it.
    pub env: &'static str,
    /// Its name on `PATH`; `None` for a tool that only comes from the repository's own install.
    pub name: Option<&'static str>,
    /// Where it usually is: absolute, or relative to the repository. One component may be `*`
    /// (the virtualenv's `lib/python3.X`).
    pub usual: &'static str,
}

/// nginx (Debian's nginx-light).
pub const NGINX: Tool = Tool::new("JWTGATE_NGINX", Some("nginx"), "/usr/sbin/nginx");
/// redis-server (Debian's); its redis-cli is beside it.
pub const REDIS_SERVER: Tool = Tool::new("JWTGATE_REDIS_SERVER", Some("redis-server"), "/usr/bin/redis-server");
/// promtool (Debian's prometheus package, unpacked into `.tools/`).
pub const PROMTOOL: Tool = Tool::new(
    "JWTGATE_PROMTOOL",
    Some("promtool"),
    ".tools/prometheus/usr/bin/promtool",
);
/// Debian's caddy, unpacked into `.tools/`.
pub const CADDY: Tool = Tool::new("JWTGATE_CADDY", None, ".tools/caddy/usr/bin/caddy");
/// Helm v4, unpacked into `.tools/`.
pub const HELM: Tool = Tool::new("JWTGATE_HELM", None, ".tools/helm/helm");
/// podman (Debian's).
pub const PODMAN: Tool = Tool::new("JWTGATE_PODMAN", Some("podman"), "/usr/bin/podman");
/// runc (Debian's), the runtime podman is run with.
pub const RUNC: Tool = Tool::new("JWTGATE_RUNC", Some("runc"), "/usr/sbin/runc");
/// The virtualenv's Python (grpcio, Envoy's protos).
pub const PYTHON: Tool = Tool::new("JWTGATE_PYTHON", None, ".venv/bin/python");
/// kubernetes-validate, in the virtualenv.
pub const KUBERNETES_VALIDATE: Tool = Tool::new("JWTGATE_KUBERNETES_VALIDATE", None, ".venv/bin/kubernetes-validate");
/// The rotel OTLP collector's agent, inside its wheel in the virtualenv.
pub const ROTEL: Tool = Tool::new("JWTGATE_ROTEL", None, ".venv/lib/*/site-packages/rotel/rotel-agent");
/// Node (panva's oidc-provider and jose, installed into tests/idp).
pub const NODE: Tool = Tool::new("JWTGATE_NODE", Some("node"), "/usr/bin/node");
/// curl.
pub const CURL: Tool = Tool::new("JWTGATE_CURL", Some("curl"), "/usr/bin/curl");

impl Tool {
    const fn new(env: &'static str, name: Option<&'static str>, usual: &'static str) -> Self {
        Self { env, name, usual }
    }

    /// The tool's path, or a failing test that says how to get it.
    #[track_caller]
    pub fn path(&self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{}={} is not a file: unset it, or run the tests with `bash tests/run.sh`",
                self.env,
                path.display()
            );
            return path;
        }
        let on_path = self.name.into_iter().flat_map(|name| {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
                .unwrap_or_default()
        });
        on_path
            .chain(usual(self.usual))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no {} (${}, PATH, {}): run the tests with `bash tests/run.sh`, which installs it",
                    self.name.unwrap_or(self.usual),
                    self.env,
                    self.usual
                )
            })
    }
}

/// `usual` as paths: relative ones inside the repository, a `*` component matching any entry.
fn usual(pattern: &str) -> Vec<PathBuf> {
    let root = if Path::new(pattern).is_absolute() {
        PathBuf::from("/")
    } else {
        repo("")
    };
    let mut found = vec![root];
    for part in Path::new(pattern).iter().filter(|p| *p != "/") {
        found = found
            .into_iter()
            .flat_map(|dir| match part.to_str() {
                Some("*") => std::fs::read_dir(&dir)
                    .map(|entries| entries.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default(),
                _ => vec![dir.join(part)],
            })
            .collect();
    }
    found
}
