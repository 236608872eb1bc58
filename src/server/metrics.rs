//! What the doors and the server's start count, registered into the core's registry (so
//! `/metrics` renders one exposition): how long each door took to answer
//! (`jwtgate_check_duration_seconds`, by [`Door`] and decision) and the runtime's worker threads.
//! The listeners' families are defined beside their counting too: connections in
//! [`super::accept`], TLS handshakes and reloads in [`crate::tls`], lost spans in
//! [`crate::telemetry::export`]. The core knows none of them.

use std::time::Duration;

use jwtgate_core::metrics::{DurationHistogram, Families};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::Door;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    door: &'static str,
    decision: &'static str,
}

/// `jwtgate_check_duration_seconds`, by door and decision: every handle resolved when
/// registered.
#[derive(Debug)]
pub struct CheckDurations {
    grpc: DoorDurations,
    http: DoorDurations,
}

impl Families for CheckDurations {
    fn register(registry: &mut Registry) -> Self {
        let family = Family::<CheckLabels, DurationHistogram>::default();
        registry.register(
            "jwtgate_check_duration_seconds",
            "Time from a check's arrival at a door to its answer",
            family.clone(),
        );
        let handle = |door: Door, decision| {
            family
                .get_or_create(&CheckLabels {
                    door: door.label(),
                    decision,
                })
                .clone()
        };
        let door = |door| DoorDurations {
            allowed: handle(door, "allow"),
            denied: handle(door, "deny"),
        };
        Self {
            grpc: door(Door::Grpc),
            http: door(Door::Http),
        }
    }
}

impl CheckDurations {
    /// The handles of `door`.
    pub fn door(&self, door: Door) -> DoorDurations {
        match door {
            Door::Grpc => self.grpc.clone(),
            Door::Http => self.http.clone(),
        }
    }
}

/// One door's check durations, allowed and denied: recording one is atomic adds.
#[derive(Debug, Clone, Default)]
pub struct DoorDurations {
    allowed: DurationHistogram,
    denied: DurationHistogram,
}

impl DoorDurations {
    /// Records how long the door took to answer a check.
    pub fn answered(&self, allowed: bool, took: Duration) {
        if allowed { &self.allowed } else { &self.denied }.observe(took);
    }
}

/// `jwtgate_worker_threads`: the server runtime's worker threads, set once at start.
#[derive(Debug)]
pub struct WorkerThreads(Gauge);

impl Families for WorkerThreads {
    fn register(registry: &mut Registry) -> Self {
        let workers = Gauge::default();
        registry.register(
            "jwtgate_worker_threads",
            "Worker threads of the server's runtime: the CPUs the process may use (its CPU quota in a container, its affinity), or TOKIO_WORKER_THREADS",
            workers.clone(),
        );
        Self(workers)
    }
}

impl WorkerThreads {
    /// Records how many worker threads the server's runtime runs.
    pub fn set(&self, workers: usize) {
        self.0.set(i64::try_from(workers).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use jwtgate_core::metrics::{Format, Metrics};

    use super::*;

    #[test]
    fn the_doors_durations_render_with_the_cores_families() {
        let metrics = Metrics::new();
        metrics
            .families::<CheckDurations>()
            .door(Door::Grpc)
            .answered(true, Duration::from_micros(30));
        metrics.families::<WorkerThreads>().set(4);
        let text = metrics.render(Format::Classic);
        for line in [
            "jwtgate_check_duration_seconds_bucket{le=\"0.000025\",door=\"grpc\",decision=\"allow\"} 0",
            "jwtgate_check_duration_seconds_bucket{le=\"0.00005\",door=\"grpc\",decision=\"allow\"} 1",
            "jwtgate_check_duration_seconds_count{door=\"grpc\",decision=\"allow\"} 1",
            "jwtgate_check_duration_seconds_count{door=\"http\",decision=\"deny\"} 0",
            "jwtgate_worker_threads 4",
            "jwtgate_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
