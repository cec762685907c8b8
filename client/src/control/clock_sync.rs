//! Estimating the server clock from the viewer's, NTP style: each ping/pong gives an offset
//! sample whose error is at most half its round-trip time, so the estimate follows the sample
//! with the smallest round trip among recent ones.

/// One completed ping/pong exchange, all in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// Viewer clock when the ping left.
    pub client_send: u64,
    pub server_receive: u64,
    pub server_send: u64,
    /// Viewer clock when the pong arrived.
    pub client_receive: u64,
}

impl Exchange {
    /// server clock − viewer clock.
    pub fn offset(&self) -> i64 {
        ((self.server_receive as i64 - self.client_send as i64)
            + (self.server_send as i64 - self.client_receive as i64))
            / 2
    }

    pub fn rtt(&self) -> u64 {
        (self.client_receive.saturating_sub(self.client_send))
            .saturating_sub(self.server_send.saturating_sub(self.server_receive))
    }
}

/// Keeps the last few samples and uses the one with the smallest round trip.
#[derive(Debug, Default)]
pub struct ClockSync {
    samples: Vec<(i64, u64)>,
    coarse: Option<i64>,
}

/// How many recent samples the estimate chooses from.
const WINDOW: usize = 16;

impl ClockSync {
    /// A first, coarse estimate from a single server timestamp (error up to one round trip).
    pub fn set_coarse(&mut self, server_time_us: u64, client_receive_us: u64) {
        self.coarse = Some(server_time_us as i64 - client_receive_us as i64);
    }

    pub fn add(&mut self, e: Exchange) {
        if self.samples.len() == WINDOW {
            self.samples.remove(0);
        }
        self.samples.push((e.offset(), e.rtt()));
    }

    /// server clock − viewer clock, in microseconds, if known.
    pub fn offset_us(&self) -> Option<i64> {
        self.samples
            .iter()
            .min_by_key(|(_, rtt)| *rtt)
            .map(|(o, _)| *o)
            .or(self.coarse)
    }

    /// The smallest round trip seen recently.
    pub fn min_rtt_us(&self) -> Option<u64> {
        self.samples.iter().map(|(_, rtt)| *rtt).min()
    }

    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Converts a viewer clock reading to the server clock.
    pub fn to_server(&self, client_us: u64) -> Option<u64> {
        self.offset_us()
            .map(|o| (client_us as i64 + o).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_exchange_gives_the_exact_offset() {
        // Server clock is 1 000 000 µs ahead; 10 ms each way; 1 ms processing.
        let e = Exchange {
            client_send: 5_000,
            server_receive: 1_015_000,
            server_send: 1_016_000,
            client_receive: 26_000,
        };
        assert_eq!(e.offset(), 1_000_000);
        assert_eq!(e.rtt(), 20_000);
    }

    #[test]
    fn the_smallest_round_trip_wins() {
        let mut s = ClockSync::default();
        assert_eq!(s.offset_us(), None);
        s.set_coarse(1_000, 0);
        assert_eq!(s.offset_us(), Some(1_000));
        // Asymmetric, slow exchange: offset estimate off by 40 ms.
        s.add(Exchange {
            client_send: 0,
            server_receive: 1_090_000,
            server_send: 1_090_000,
            client_receive: 100_000,
        });
        // Fast exchange: exact.
        s.add(Exchange {
            client_send: 200_000,
            server_receive: 1_201_000,
            server_send: 1_201_000,
            client_receive: 202_000,
        });
        assert_eq!(s.offset_us(), Some(1_000_000));
        assert_eq!(s.min_rtt_us(), Some(2_000));
        assert_eq!(s.to_server(5), Some(1_000_005));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut s = ClockSync::default();
        s.add(Exchange {
            client_send: 0,
            server_receive: 500,
            server_send: 500,
            client_receive: 0,
        });
        for i in 0..WINDOW as u64 {
            s.add(Exchange {
                client_send: i,
                server_receive: 100 + i,
                server_send: 100 + i,
                client_receive: i + 10,
            });
        }
        assert_eq!(s.samples(), WINDOW);
        assert_eq!(s.min_rtt_us(), Some(10));
    }
}
