//! `telemetry.tracing:`: its schema, its validated form and its validator. A field the file leaves out falls back to its OpenTelemetry
//! environment variable (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_RESOURCE_ATTRIBUTES`, and the
//! `_TRACES_` variants of the first two), then to the default: the file wins where both are set.

use serde::Deserialize;

use super::{ConfigError, Validator};

/// `telemetry:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `telemetry.tracing:`.
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `telemetry.tracing:`. Each field left out falls back to its OpenTelemetry environment
/// variable, then to the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// OTLP collector URL; unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `grpc` | `http/protobuf`.
    pub protocol: Option<String>,
    /// Share of root checks traced, 0.0 to 1.0.
    pub sample_ratio: Option<f64>,
    /// `service.name` of the resource.
    pub service_name: Option<String>,
    /// Whether spans carry the subject as `enduser.id`.
    pub record_subject: Option<bool>,
}

/// How spans are sampled and where they go.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans are exported; `None`: nowhere (checks still get a trace id).
    pub export: Option<OtlpExport>,
    /// Share of root checks (no sampled or unsampled parent) that are traced.
    pub sample_ratio: f64,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Whether a check's span carries the verified subject as `enduser.id`.
    pub record_subject: bool,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, without `service.name`).
    pub resource_attributes: Vec<(String, String)>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            export: None,
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            service_name: "jwtgate".into(),
            record_subject: false,
            resource_attributes: Vec::new(),
        }
    }
}

/// Root sampling ratio when neither the file nor `OTEL_TRACES_SAMPLER_ARG` sets one.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// An OTLP collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// The URL spans are sent to: for `grpc` the collector's address, for `http/protobuf` the
    /// full traces URL (`/v1/traces` appended to a base URL that has no path).
    pub url: String,
    /// The wire protocol.
    pub protocol: OtlpProtocol,
}

/// OTLP wire protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// As written in the config: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

impl Validator<'_> {
    /// `telemetry.tracing`, with `env` standing for the process environment.
    pub(super) fn tracing(
        &self,
        raw: RawTracing,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TracingConfig, ConfigError> {
        let f = "telemetry.tracing";
        // Where a value came from, for the error message.
        let from = |field: &str, var: Option<&str>| match var {
            None => format!("{f}.{field}"),
            Some(var) => format!("{f}.{field} (from {var})"),
        };
        let env_var = |names: &[&'static str]| {
            names.iter().find_map(|n| {
                env(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*n, v.trim().to_owned()))
            })
        };

        let (protocol_var, protocol) = match raw.protocol {
            Some(p) => (None, p),
            None => match env_var(&["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
                Some((var, p)) => (Some(var), p),
                None => (None, "grpc".into()),
            },
        };
        let protocol = match protocol.as_str() {
            "grpc" => OtlpProtocol::Grpc,
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "http/json" => {
                return Err(self.err(
                    from("protocol", protocol_var),
                    "http/json is not supported: use grpc or http/protobuf",
                ));
            }
            other => {
                return Err(self.err(
                    from("protocol", protocol_var),
                    format!("`{other}` is not one of grpc, http/protobuf"),
                ));
            }
        };

        // The signal-specific variable is the traces URL itself; the general one is a base URL.
        let endpoint = match raw.otlp_endpoint {
            Some(url) => Some((None, url, false)),
            None => env_var(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
                .map(|(var, url)| (Some(var), url, true))
                .or_else(|| env_var(&["OTEL_EXPORTER_OTLP_ENDPOINT"]).map(|(var, url)| (Some(var), url, false))),
        };
        let export = match endpoint {
            None => None,
            Some((var, url, exact)) => Some(OtlpExport {
                url: self.otlp_url(&from("otlp_endpoint", var), &url, protocol, exact)?,
                protocol,
            }),
        };

        let (ratio_var, sample_ratio) = match raw.sample_ratio {
            Some(r) => (None, r),
            None => match env_var(&["OTEL_TRACES_SAMPLER_ARG"]) {
                Some((var, text)) => (
                    Some(var),
                    text.parse::<f64>()
                        .map_err(|_| self.err(from("sample_ratio", Some(var)), format!("`{text}` is not a number")))?,
                ),
                None => (None, DEFAULT_SAMPLE_RATIO),
            },
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(self.err(from("sample_ratio", ratio_var), "must be between 0.0 and 1.0"));
        }

        let mut resource_attributes = Vec::new();
        let mut resource_service = None;
        if let Some((var, text)) = env_var(&["OTEL_RESOURCE_ATTRIBUTES"]) {
            for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(self.err(format!("{f} (from {var})"), format!("`{pair}` is not key=value")));
                };
                let (k, v) = (k.trim().to_owned(), percent_decode(v.trim()));
                if k.is_empty() {
                    return Err(self.err(format!("{f} (from {var})"), format!("`{pair}` has an empty key")));
                }
                if k == "service.name" {
                    resource_service = Some(v);
                } else {
                    resource_attributes.push((k, v));
                }
            }
        }
        let (service_var, service_name) = match raw.service_name {
            Some(s) => (None, s),
            None => match env_var(&["OTEL_SERVICE_NAME"]) {
                Some((var, s)) => (Some(var), s),
                None => (None, resource_service.unwrap_or_else(|| "jwtgate".into())),
            },
        };
        if service_name.is_empty() || service_name.len() > 255 || service_name.chars().any(char::is_control) {
            return Err(self.err(
                from("service_name", service_var),
                "must be 1 to 255 characters without control characters",
            ));
        }
        Ok(TracingConfig {
            export,
            sample_ratio,
            service_name,
            record_subject: raw.record_subject.unwrap_or(false),
            resource_attributes,
        })
    }

    /// An `http://` or `https://` URL with a host; for OTLP/HTTP the traces path is appended to
    /// a base URL unless `exact`. OTLP/gRPC over TLS is not built in.
    fn otlp_url(&self, field: &str, url: &str, protocol: OtlpProtocol, exact: bool) -> Result<String, ConfigError> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| self.err(field, format!("`{url}` must start with http:// or https://")))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(self.err(field, format!("`{url}` has no usable host[:port]")));
        }
        match protocol {
            OtlpProtocol::Grpc if url.starts_with("https://") => Err(self.err(
                field,
                "OTLP/gRPC over TLS is not built in: use http:// to a collector beside jwtgate, or protocol: http/protobuf for https://",
            )),
            OtlpProtocol::Grpc if !path.is_empty() && path != "/" => Err(self.err(
                field,
                format!("`{url}`: an OTLP/gRPC endpoint is scheme://host:port, without a path"),
            )),
            OtlpProtocol::Grpc => Ok(format!("{}{host}", &url[..url.len() - rest.len()])),
            OtlpProtocol::HttpProtobuf if exact || !(path.is_empty() || path == "/") => Ok(url.to_owned()),
            OtlpProtocol::HttpProtobuf => Ok(format!("{}{host}/v1/traces", &url[..url.len() - rest.len()])),
        }
    }
}

/// `%XX` escapes decoded (the W3C baggage octet encoding `OTEL_RESOURCE_ATTRIBUTES` uses); a
/// malformed escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn tracing(yaml: &str, env: &[(&str, &str)]) -> Result<TracingConfig, ConfigError> {
        let raw: RawTracing = serde_saphyr::from_str(yaml).expect("yaml");
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Validator {
            file: "t.yaml",
            base: Path::new("."),
            loose: std::cell::RefCell::default(),
        }
        .tracing(raw, &|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_export_nothing_and_sample_one_percent_of_roots() {
        let t = tracing("{}", &[]).unwrap();
        assert_eq!(t, TracingConfig::default());
        assert_eq!(t.sample_ratio, 0.01);
        assert_eq!(t.service_name, "jwtgate");
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ];
        let t = tracing(
            "{otlp_endpoint: 'http://file:4317', service_name: auth, sample_ratio: 1.0}",
            &env,
        )
        .unwrap();
        assert_eq!(t.export.unwrap().url, "http://file:4317");
        assert_eq!((t.service_name.as_str(), t.sample_ratio), ("auth", 1.0));
        let t = tracing("{}", &env).unwrap();
        assert_eq!(t.export.unwrap().url, "http://env:4317");
        assert_eq!((t.service_name.as_str(), t.sample_ratio), ("from-env", 0.5));
    }

    #[test]
    fn http_protobuf_appends_the_traces_path_to_a_base_url_only() {
        let t = tracing("{otlp_endpoint: 'http://c:4318', protocol: http/protobuf}", &[]).unwrap();
        assert_eq!(t.export.unwrap().url, "http://c:4318/v1/traces");
        let t = tracing(
            "{otlp_endpoint: 'https://c/otlp/v1/traces', protocol: http/protobuf}",
            &[],
        )
        .unwrap();
        assert_eq!(t.export.unwrap().url, "https://c/otlp/v1/traces");
        let env = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318"),
        ];
        let t = tracing("{}", &env).unwrap();
        let export = t.export.unwrap();
        assert_eq!(
            (export.url.as_str(), export.protocol),
            ("http://c:4318", OtlpProtocol::HttpProtobuf)
        );
    }

    #[test]
    fn resource_attributes_are_decoded_and_service_name_taken_from_them() {
        let env = [(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=gate,deployment.environment=prod%20eu, k8s.pod.name=p-1",
        )];
        let t = tracing("{}", &env).unwrap();
        assert_eq!(t.service_name, "gate");
        assert_eq!(
            t.resource_attributes,
            vec![
                ("deployment.environment".into(), "prod eu".into()),
                ("k8s.pod.name".into(), "p-1".into())
            ]
        );
    }

    #[test]
    fn each_mistake_names_its_field_and_the_variable_it_came_from() {
        type Env = &'static [(&'static str, &'static str)];
        let cases: [(&str, Env, &str, &str); 9] = [
            ("{protocol: thrift}", &[], "telemetry.tracing.protocol", "not one of"),
            (
                "{protocol: http/json}",
                &[],
                "telemetry.tracing.protocol",
                "not supported",
            ),
            (
                "{otlp_endpoint: 'collector:4317'}",
                &[],
                "telemetry.tracing.otlp_endpoint",
                "http://",
            ),
            (
                "{otlp_endpoint: 'https://c:4317'}",
                &[],
                "telemetry.tracing.otlp_endpoint",
                "TLS",
            ),
            (
                "{otlp_endpoint: 'http://c:4317/v1'}",
                &[],
                "telemetry.tracing.otlp_endpoint",
                "without a path",
            ),
            ("{sample_ratio: 1.5}", &[], "telemetry.tracing.sample_ratio", "between"),
            (
                "{}",
                &[("OTEL_TRACES_SAMPLER_ARG", "most")],
                "telemetry.tracing.sample_ratio (from OTEL_TRACES_SAMPLER_ARG)",
                "not a number",
            ),
            (
                "{}",
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")],
                "telemetry.tracing.otlp_endpoint (from OTEL_EXPORTER_OTLP_ENDPOINT)",
                "host",
            ),
            (
                "{}",
                &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
                "telemetry.tracing (from OTEL_RESOURCE_ATTRIBUTES)",
                "key=value",
            ),
        ];
        for (yaml, env, field, reason) in cases {
            let e = tracing(yaml, env).expect_err(yaml);
            assert_eq!(e.field, field, "{yaml} {env:?}");
            assert!(e.reason.contains(reason), "{yaml}: {}", e.reason);
        }
    }
}
