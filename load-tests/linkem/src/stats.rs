//! Per-interval counters of one direction, written as CSV rows by `--log-csv`.

use std::time::Duration;

use crate::link::Verdict;

pub const CSV_HEADER: &str =
    "t_s,direction,rate_kbps,bytes_in,bytes_out,dropped_loss,dropped_queue,avg_queue_delay_ms";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    /// Packets that could not be written to the destination device.
    pub write_errors: u64,
    /// Packets the NAT dropped before the link model (no binding, unsupported protocol).
    /// Not part of the CSV rows (their columns stay as they were); reported in the totals.
    pub dropped_nat: u64,
    queue_delay_sum: Duration,
    queued: u64,
}

impl Counters {
    pub fn on_verdict(&mut self, len: usize, v: &Verdict) {
        self.bytes_in += len as u64;
        self.packets_in += 1;
        match v {
            Verdict::Deliver { queue_delay, .. } => {
                self.queue_delay_sum += *queue_delay;
                self.queued += 1;
            }
            Verdict::DropLoss => self.dropped_loss += 1,
            Verdict::DropQueue => self.dropped_queue += 1,
        }
    }

    pub fn on_sent(&mut self, len: usize) {
        self.bytes_out += len as u64;
        self.packets_out += 1;
    }

    /// Mean time accepted packets waited for the rate limiter, in ms (0 if none).
    pub fn avg_queue_delay_ms(&self) -> f64 {
        if self.queued == 0 {
            0.0
        } else {
            self.queue_delay_sum.as_secs_f64() * 1e3 / self.queued as f64
        }
    }

    pub fn add(&mut self, o: &Counters) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.dropped_loss += o.dropped_loss;
        self.dropped_queue += o.dropped_queue;
        self.write_errors += o.write_errors;
        self.dropped_nat += o.dropped_nat;
        self.queue_delay_sum += o.queue_delay_sum;
        self.queued += o.queued;
    }

    pub fn csv_row(&self, t_s: u64, direction: &str, rate_kbps: f64) -> String {
        format!(
            "{t_s},{direction},{rate_kbps},{},{},{},{},{:.1}",
            self.bytes_in,
            self.bytes_out,
            self.dropped_loss,
            self.dropped_queue,
            self.avg_queue_delay_ms()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn counts_and_formats() {
        let mut c = Counters::default();
        let at = Instant::now();
        c.on_verdict(
            100,
            &Verdict::Deliver {
                at,
                queue_delay: Duration::from_millis(10),
            },
        );
        c.on_verdict(
            100,
            &Verdict::Deliver {
                at,
                queue_delay: Duration::from_millis(30),
            },
        );
        c.on_verdict(50, &Verdict::DropLoss);
        c.on_verdict(50, &Verdict::DropQueue);
        c.on_sent(100);
        assert_eq!(
            c.csv_row(3, "downlink", 300.0),
            "3,downlink,300,300,100,1,1,20.0"
        );
        assert_eq!(
            CSV_HEADER.split(',').count(),
            c.csv_row(0, "x", 0.0).split(',').count()
        );
        let mut total = Counters::default();
        total.add(&c);
        total.add(&c);
        assert_eq!(total.bytes_in, 600);
        assert_eq!(total.avg_queue_delay_ms(), 20.0);
    }
}
