//! The audio forwarder: which Opus bitrate one viewer hears and which packets go out as
//! datagrams. Sans-I/O, like the video forwarder: the driver subscribes to what it says and
//! asks it about every packet.

use std::collections::VecDeque;

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioAction {
    /// Receive the packets of this bitrate (instead of any other).
    Listen(u32),
    /// Receive no packets.
    Stop,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// The broadcaster paused the stream: nothing goes out (not a loss).
    Withhold,
    /// Dropped and counted; `first` is true the first time for this reason (worth a warning).
    TooBig {
        first: bool,
    },
}

/// Packets counted by the forwarder, logged when the session ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AudioCounters {
    pub sent: u64,
    /// Packets lost before the network: the session fell behind, a packet did not fit a
    /// datagram, or the datagram could not be queued.
    pub dropped: u64,
}

#[derive(Debug)]
pub struct AudioForwarder {
    bitrate_bps: u32,
    listening: bool,
    broadcast_paused: bool,
    warned_too_big: bool,
    counters: AudioCounters,
    actions: VecDeque<AudioAction>,
}

impl AudioForwarder {
    /// Starts listening to `bitrate_bps` (queues its [`AudioAction::Listen`]).
    pub fn new(bitrate_bps: u32, broadcast_paused: bool) -> Self {
        Self {
            bitrate_bps,
            listening: true,
            broadcast_paused,
            warned_too_big: false,
            counters: AudioCounters::default(),
            actions: VecDeque::from([AudioAction::Listen(bitrate_bps)]),
        }
    }

    pub fn counters(&self) -> AudioCounters {
        self.counters
    }

    pub fn poll_action(&mut self) -> Option<AudioAction> {
        self.actions.pop_front()
    }

    /// The viewer chose a bitrate the hub offers.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) {
        self.bitrate_bps = bitrate_bps;
        if self.listening {
            self.actions.push_back(AudioAction::Listen(bitrate_bps));
        }
    }

    /// The viewer paused (nothing is received) or resumed its stream.
    pub fn set_viewer_paused(&mut self, paused: bool) {
        if paused && self.listening {
            self.actions.push_back(AudioAction::Stop);
        } else if !paused && !self.listening {
            self.actions
                .push_back(AudioAction::Listen(self.bitrate_bps));
        }
        self.listening = !paused;
    }

    pub fn set_broadcast_paused(&mut self, paused: bool) {
        self.broadcast_paused = paused;
    }

    /// Whether a packet of `len` bytes goes out, the largest datagram being `max_datagram`
    /// (`None`: the viewer takes no datagrams).
    pub fn packet(&mut self, len: usize, max_datagram: Option<usize>) -> Verdict {
        if self.broadcast_paused {
            return Verdict::Withhold;
        }
        if max_datagram.is_some_and(|max| len <= max) {
            return Verdict::Send;
        }
        self.counters.dropped += 1;
        Verdict::TooBig {
            first: !std::mem::replace(&mut self.warned_too_big, true),
        }
    }

    /// The session fell behind the encoder by `packets`: lost to it.
    pub fn lagged(&mut self, packets: u64) {
        self.counters.dropped += packets;
    }

    /// What became of a packet the driver sent: queued, or refused by the connection.
    pub fn sent(&mut self, queued: bool) {
        if queued {
            self.counters.sent += 1;
        } else {
            self.counters.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(a: &mut AudioForwarder) -> Vec<AudioAction> {
        std::iter::from_fn(|| a.poll_action()).collect()
    }

    #[test]
    fn listens_to_the_chosen_bitrate_and_lets_go_while_paused() {
        let mut a = AudioForwarder::new(32_000, false);
        assert_eq!(actions(&mut a), [AudioAction::Listen(32_000)]);
        a.set_bitrate(64_000);
        assert_eq!(actions(&mut a), [AudioAction::Listen(64_000)]);
        a.set_viewer_paused(true);
        a.set_viewer_paused(true);
        assert_eq!(actions(&mut a), [AudioAction::Stop]);
        // A bitrate chosen while paused is the one heard after.
        a.set_bitrate(16_000);
        assert!(actions(&mut a).is_empty());
        a.set_viewer_paused(false);
        assert_eq!(actions(&mut a), [AudioAction::Listen(16_000)]);
    }

    #[test]
    fn every_packet_not_sent_is_counted_except_during_the_broadcasters_pause() {
        let mut a = AudioForwarder::new(32_000, false);
        assert_eq!(a.packet(100, Some(1200)), Verdict::Send);
        a.sent(true);
        assert_eq!(a.packet(1300, Some(1200)), Verdict::TooBig { first: true });
        assert_eq!(a.packet(100, None), Verdict::TooBig { first: false });
        a.sent(false);
        a.lagged(5);
        a.set_broadcast_paused(true);
        assert_eq!(a.packet(100, Some(1200)), Verdict::Withhold);
        assert_eq!(
            a.counters(),
            AudioCounters {
                sent: 1,
                dropped: 8
            }
        );
    }
}
