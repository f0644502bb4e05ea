//! Prometheus metrics. Counters are atomics: the media path increments them without locks.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGauge,
    pub tracks: IntGauge,
    pub rtp_packets_in: IntCounter,
    pub rtp_bytes_in: IntCounter,
    pub rtp_packets_out: IntCounter,
    pub rtp_bytes_out: IntCounter,
    pub udp_send_dropped: IntCounter,
    pub udp_recv_dropped: IntCounter,
    pub nacks_received: IntCounter,
    pub nacks_sent: IntCounter,
    pub keyframe_requests_received: IntCounter,
    pub keyframe_requests_sent: IntCounter,
    pub keyframe_requests_suppressed: IntCounter,
    pub layer_switches: IntCounter,
    pub probe_requests: IntCounter,
    pub bwe_restarts: IntCounter,
    pub resumes: IntCounter,
    pub congestion_restarts: IntCounter,
    pub rtp_over_budget: IntCounter,
    pub dynacast_changes: IntCounter,
    /// Joins sent to the node that holds their consult (cluster).
    pub cluster_redirects: IntCounter,
    /// Consults found running here and on another node, handed over to it (cluster).
    pub cluster_handovers: IntCounter,
    pub paused_subscriptions: IntGauge,
    pub estimate_bps: Histogram,
    signaling_errors: IntCounterVec,
    /// Admission control (`crate::admission`): joins refused, by reason.
    joins_refused: IntCounterVec,
    /// Median lag of the event loop's 100 ms tick, as admission control sees it.
    pub event_loop_lag_seconds: Gauge,
    /// 1 while admission control refuses joins because the node is saturated.
    pub admission_busy: IntGauge,
    /// Tasks alive in the tokio runtime (a leak shows here first).
    pub tokio_tasks: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("invariant: metric names are valid literals");
    registry
        .register(Box::new(c.clone()))
        .expect("invariant: each metric is registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("invariant: metric names are valid literals");
    registry
        .register(Box::new(g.clone()))
        .expect("invariant: each metric is registered once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let signaling_errors = IntCounterVec::new(
            Opts::new(
                "consult_signaling_errors_total",
                "Rejected signaling messages, by error code",
            ),
            &["code"],
        )
        .expect("invariant: metric names are valid literals");
        r.register(Box::new(signaling_errors.clone()))
            .expect("invariant: each metric is registered once");
        let joins_refused = IntCounterVec::new(
            Opts::new(
                "consult_joins_refused_total",
                "Joins refused with server_busy by admission control, by reason (participant_cap, event_loop_lag, cpu)",
            ),
            &["reason"],
        )
        .expect("invariant: metric names are valid literals");
        r.register(Box::new(joins_refused.clone()))
            .expect("invariant: each metric is registered once");
        let event_loop_lag_seconds = Gauge::new(
            "consult_event_loop_lag_seconds",
            "Median lateness of the event loop's 100 ms tick over the last 11 ticks",
        )
        .expect("invariant: metric names are valid literals");
        r.register(Box::new(event_loop_lag_seconds.clone()))
            .expect("invariant: each metric is registered once");
        let estimate_bps = Histogram::with_opts(
            HistogramOpts::new(
                "consult_subscriber_estimate_bps",
                "Send-side bandwidth estimate per subscriber, sampled on every update",
            )
            .buckets(vec![
                100e3, 200e3, 300e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 5e6,
            ]),
        )
        .expect("invariant: metric names are valid literals");
        r.register(Box::new(estimate_bps.clone()))
            .expect("invariant: each metric is registered once");
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds: what the
        // saturation alert and the dashboard's CPU panel read (deploy/prometheus).
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("invariant: the process collector is registered once");
        Metrics {
            rooms: gauge(&r, "consult_rooms", "Open rooms (consults)"),
            participants: gauge(&r, "consult_participants", "Joined participants"),
            tracks: gauge(&r, "consult_tracks", "Published tracks"),
            rtp_packets_in: counter(
                &r,
                "consult_rtp_packets_in_total",
                "RTP packets received from publishers",
            ),
            rtp_bytes_in: counter(
                &r,
                "consult_rtp_bytes_in_total",
                "RTP payload bytes received from publishers",
            ),
            rtp_packets_out: counter(
                &r,
                "consult_rtp_packets_out_total",
                "RTP packets forwarded to subscribers",
            ),
            rtp_bytes_out: counter(
                &r,
                "consult_rtp_bytes_out_total",
                "RTP payload bytes forwarded to subscribers",
            ),
            udp_send_dropped: counter(
                &r,
                "consult_udp_send_dropped_total",
                "Datagrams dropped because the socket was full",
            ),
            udp_recv_dropped: counter(
                &r,
                "consult_udp_recv_dropped_total",
                "Datagrams dropped: unknown sender or room queue full",
            ),
            nacks_received: counter(
                &r,
                "consult_nacks_received_total",
                "NACKs received from subscribers (answered from the cache)",
            ),
            nacks_sent: counter(&r, "consult_nacks_sent_total", "NACKs sent to publishers"),
            keyframe_requests_received: counter(
                &r,
                "consult_keyframe_requests_received_total",
                "PLI/FIR received from subscribers",
            ),
            keyframe_requests_sent: counter(
                &r,
                "consult_keyframe_requests_sent_total",
                "PLI/FIR sent to publishers",
            ),
            keyframe_requests_suppressed: counter(
                &r,
                "consult_keyframe_requests_suppressed_total",
                "Keyframe requests collapsed by the per-publisher throttle",
            ),
            layer_switches: counter(
                &r,
                "consult_layer_switches_total",
                "Simulcast layer switches done for subscribers",
            ),
            resumes: counter(
                &r,
                "consult_resumes_total",
                "Participants back on a new signaling connection with their resume token",
            ),
            probe_requests: counter(
                &r,
                "consult_bwe_probe_requests_total",
                "Bandwidth probes re-armed because a wanted step up did not fit the estimate",
            ),
            bwe_restarts: counter(
                &r,
                "consult_bwe_restarts_total",
                "Bandwidth estimators restarted because their estimate stood still under unmet demand without loss",
            ),
            congestion_restarts: counter(&r, "consult_congestion_restarts_total", "Video subscriptions restarted from a keyframe because the subscriber's send queue overflowed"),
            rtp_over_budget: counter(&r, "consult_rtp_over_budget_dropped_total", "RTP packets dropped on arrival because their publication sent far above its configured layers"),
            cluster_redirects: counter(
                &r,
                "consult_cluster_redirects_total",
                "Joins answered with a redirect to the node that holds the consult",
            ),
            cluster_handovers: counter(
                &r,
                "consult_cluster_handovers_total",
                "Consults found running here while the directory had placed them on another node; their participants were sent there",
            ),
            dynacast_changes: counter(
                &r,
                "consult_dynacast_changes_total",
                "Times a publisher was told to start or stop simulcast layers",
            ),
            paused_subscriptions: gauge(
                &r,
                "consult_paused_subscriptions",
                "Video subscriptions paused because the subscriber's link is too weak",
            ),
            estimate_bps,
            signaling_errors,
            joins_refused,
            event_loop_lag_seconds,
            admission_busy: gauge(
                &r,
                "consult_admission_busy",
                "1 while new joins are refused because the node is saturated (lag or CPU)",
            ),
            tokio_tasks: gauge(&r, "consult_tokio_tasks", "Tasks alive in the tokio runtime"),
            registry: r,
        }
    }

    pub fn signaling_error(&self, code: &str) {
        self.signaling_errors.with_label_values(&[code]).inc();
    }

    pub fn join_refused(&self, reason: &str) {
        self.joins_refused.with_label_values(&[reason]).inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("invariant: encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("invariant: the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
