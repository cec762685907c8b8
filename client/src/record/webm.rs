//! A small WebM (Matroska) writer for one AV1 and one Opus track, written as it goes: the
//! segment has an unknown size until the end, clusters are written whole (one per video
//! keyframe), so a recording cut short by a crash still plays up to its last cluster.
//! Element ids and layout: RFC 9559 (Matroska), the WebM guidelines, and "AV1 in Matroska".

use std::io::{self, Seek, SeekFrom, Write};

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const FLAG_LACING: u32 = 0x9C;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// An EBML size of "unknown" (all value bits set), 8 bytes long.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

pub const VIDEO_TRACK: u8 = 1;
pub const AUDIO_TRACK: u8 = 2;

fn put_id(b: &mut Vec<u8>, id: u32) {
    let len = 4 - (id.leading_zeros() / 8) as usize;
    b.extend_from_slice(&id.to_be_bytes()[4 - len.max(1)..]);
}

/// The shortest EBML variable-size integer for `size` (the all-ones value means unknown).
fn put_size(b: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let v = size | (1u64 << (7 * len));
    b.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

fn bin(b: &mut Vec<u8>, id: u32, data: &[u8]) {
    put_id(b, id);
    put_size(b, data.len() as u64);
    b.extend_from_slice(data);
}

fn uint(b: &mut Vec<u8>, id: u32, v: u64) {
    let skip = ((v.leading_zeros() / 8) as usize).min(7);
    bin(b, id, &v.to_be_bytes()[skip..]);
}

fn float(b: &mut Vec<u8>, id: u32, v: f64) {
    bin(b, id, &v.to_be_bytes());
}

fn text(b: &mut Vec<u8>, id: u32, s: &str) {
    bin(b, id, s.as_bytes());
}

fn master(b: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    bin(b, id, &inner);
}

/// The start of a track entry: its number (also its UID), type (1 video, 2 audio), codec and
/// the codec's private data; no lacing.
fn track_head(b: &mut Vec<u8>, number: u8, kind: u64, codec: &str, private: &[u8]) {
    uint(b, TRACK_NUMBER, number as u64);
    uint(b, TRACK_UID, number as u64);
    uint(b, TRACK_TYPE, kind);
    uint(b, FLAG_LACING, 0);
    text(b, CODEC_ID, codec);
    bin(b, CODEC_PRIVATE, private);
}

/// What the tracks hold.
pub struct Tracks<'a> {
    pub width: u32,
    pub height: u32,
    /// V_AV1 CodecPrivate (`av1C`).
    pub av1c: &'a [u8],
    /// Opus encoder delay in 48 kHz samples.
    pub opus_pre_skip: u16,
    pub opus_channels: u8,
}

/// The 19-byte OpusHead (RFC 7845 §5.1) for mono or stereo at 48 kHz.
pub fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// Opus's encoder delay shifts its blocks in WebM: players subtract CodecDelay from them.
pub fn codec_delay_ms(pre_skip: u16) -> i64 {
    (pre_skip as u64 * 1000).div_ceil(48_000) as i64
}

/// How long blocks wait to be put in time order: audio is handed over when played and video
/// when decoded, up to a few hundred milliseconds apart for the same capture time.
pub const INTERLEAVE_MS: i64 = 500;

/// A block waiting to be written, ordered by time, then arrival.
struct Pending {
    ms: i64,
    arrival: u64,
    track: u8,
    keyframe: bool,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ms, self.arrival) == (other.ms, other.arrival)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: the heap's top is the earliest block.
        (other.ms, other.arrival).cmp(&(self.ms, self.arrival))
    }
}

pub struct WebmWriter<W: Write + Seek> {
    out: W,
    pending: std::collections::BinaryHeap<Pending>,
    arrivals: u64,
    newest_ms: i64,
    cluster: Vec<u8>,
    cluster_ms: Option<i64>,
    last_ms: i64,
    /// Where the segment's size and the Info's Duration are, to fill in at the end.
    segment_size_at: u64,
    duration_at: u64,
    written: u64,
}

impl<W: Write + Seek> WebmWriter<W> {
    pub fn new(mut out: W, tracks: &Tracks) -> io::Result<Self> {
        let mut b = Vec::new();
        master(&mut b, EBML, |b| {
            uint(b, EBML_VERSION, 1);
            uint(b, EBML_READ_VERSION, 1);
            uint(b, EBML_MAX_ID_LENGTH, 4);
            uint(b, EBML_MAX_SIZE_LENGTH, 8);
            text(b, DOC_TYPE, "webm");
            uint(b, DOC_TYPE_VERSION, 4);
            uint(b, DOC_TYPE_READ_VERSION, 2);
        });
        put_id(&mut b, SEGMENT);
        let segment_size_at = b.len() as u64;
        b.extend_from_slice(&UNKNOWN_SIZE);
        let mut info = Vec::new();
        uint(&mut info, TIMESTAMP_SCALE, 1_000_000); // milliseconds
        text(&mut info, MUXING_APP, "StreamSocket");
        text(
            &mut info,
            WRITING_APP,
            concat!("streamsocket-client ", env!("CARGO_PKG_VERSION")),
        );
        put_id(&mut info, DURATION);
        put_size(&mut info, 8);
        let duration_in_info = info.len();
        info.extend_from_slice(&0f64.to_be_bytes());
        put_id(&mut b, INFO);
        put_size(&mut b, info.len() as u64);
        let duration_at = (b.len() + duration_in_info) as u64;
        b.extend_from_slice(&info);
        let head = opus_head(tracks.opus_channels, tracks.opus_pre_skip);
        master(&mut b, TRACKS, |b| {
            master(b, TRACK_ENTRY, |b| {
                track_head(b, VIDEO_TRACK, 1, "V_AV1", tracks.av1c);
                master(b, VIDEO, |b| {
                    uint(b, PIXEL_WIDTH, tracks.width as u64);
                    uint(b, PIXEL_HEIGHT, tracks.height as u64);
                });
            });
            master(b, TRACK_ENTRY, |b| {
                track_head(b, AUDIO_TRACK, 2, "A_OPUS", &head);
                uint(
                    b,
                    CODEC_DELAY,
                    tracks.opus_pre_skip as u64 * 1_000_000_000 / 48_000,
                );
                uint(b, SEEK_PRE_ROLL, 80_000_000);
                master(b, AUDIO, |b| {
                    float(b, SAMPLING_FREQUENCY, 48_000.0);
                    uint(b, CHANNELS, tracks.opus_channels as u64);
                });
            });
        });
        out.write_all(&b)?;
        Ok(Self {
            out,
            pending: std::collections::BinaryHeap::new(),
            arrivals: 0,
            newest_ms: 0,
            cluster: Vec::new(),
            cluster_ms: None,
            last_ms: 0,
            segment_size_at,
            duration_at,
            written: b.len() as u64,
        })
    }

    fn write_cluster(&mut self) -> io::Result<()> {
        if self.cluster_ms.is_none() {
            return Ok(());
        }
        let mut b = Vec::with_capacity(self.cluster.len() + 12);
        bin(&mut b, CLUSTER, &self.cluster);
        self.out.write_all(&b)?;
        self.written += b.len() as u64;
        self.cluster.clear();
        self.cluster_ms = None;
        Ok(())
    }

    /// Adds a frame of `track` at `ms` from the start of the recording. Blocks are written in
    /// time order across tracks once [`INTERLEAVE_MS`] newer ones have arrived.
    pub fn block(&mut self, track: u8, ms: i64, keyframe: bool, data: &[u8]) -> io::Result<()> {
        self.arrivals += 1;
        self.newest_ms = self.newest_ms.max(ms);
        self.pending.push(Pending {
            ms,
            arrival: self.arrivals,
            track,
            keyframe,
            data: data.to_vec(),
        });
        while self
            .pending
            .peek()
            .is_some_and(|p| p.ms <= self.newest_ms - INTERLEAVE_MS)
        {
            let p = self.pending.pop().expect("peeked");
            self.write_block(p.track, p.ms, p.keyframe, &p.data)?;
        }
        Ok(())
    }

    /// Writes a block; a video keyframe starts a new cluster (writing the previous one out).
    fn write_block(&mut self, track: u8, ms: i64, keyframe: bool, data: &[u8]) -> io::Result<()> {
        let ms = ms.max(0);
        let start_new = match self.cluster_ms {
            None => true,
            // Block times are 16-bit offsets from the cluster's.
            Some(c) => (track == VIDEO_TRACK && keyframe) || (ms - c).abs() > 30_000,
        };
        if start_new {
            self.write_cluster()?;
            self.cluster_ms = Some(ms);
            uint(&mut self.cluster, TIMESTAMP, ms as u64);
        }
        let relative = (ms - self.cluster_ms.expect("set above")) as i16;
        put_id(&mut self.cluster, SIMPLE_BLOCK);
        put_size(&mut self.cluster, 4 + data.len() as u64);
        self.cluster.push(0x80 | track);
        self.cluster.extend_from_slice(&relative.to_be_bytes());
        self.cluster.push(if keyframe { 0x80 } else { 0x00 });
        self.cluster.extend_from_slice(data);
        self.last_ms = self.last_ms.max(ms);
        Ok(())
    }

    /// Writes the last cluster and fills in the duration and the segment's size.
    pub fn finish(mut self, last_frame_ms: i64) -> io::Result<W> {
        while let Some(p) = self.pending.pop() {
            self.write_block(p.track, p.ms, p.keyframe, &p.data)?;
        }
        self.write_cluster()?;
        let end = self.written;
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out
            .write_all(&((self.last_ms + last_frame_ms) as f64).to_be_bytes())?;
        let segment_start = self.segment_size_at + 8;
        self.out.seek(SeekFrom::Start(self.segment_size_at))?;
        self.out
            .write_all(&((end - segment_start) | (1u64 << 56)).to_be_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebml_numbers_are_shortest_form() {
        let mut b = Vec::new();
        put_size(&mut b, 0);
        put_size(&mut b, 126);
        put_size(&mut b, 127); // 0x7f would read as "unknown": two bytes
        assert_eq!(b, [0x80, 0xfe, 0x40, 0x7f]);
        let mut b = Vec::new();
        put_id(&mut b, TRACK_ENTRY);
        put_id(&mut b, CODEC_PRIVATE);
        put_id(&mut b, SEGMENT);
        assert_eq!(b, [0xAE, 0x63, 0xA2, 0x18, 0x53, 0x80, 0x67]);
    }

    fn writer() -> WebmWriter<std::io::Cursor<Vec<u8>>> {
        let tracks = Tracks {
            width: 64,
            height: 64,
            av1c: &[0x81, 0, 0x0c, 0],
            opus_pre_skip: 120,
            opus_channels: 1,
        };
        WebmWriter::new(std::io::Cursor::new(Vec::new()), &tracks).unwrap()
    }

    #[test]
    fn blocks_are_written_in_time_order_across_tracks() {
        let mut w = writer();
        // Audio handed over before the video of the same time, as the viewer does.
        w.block(AUDIO_TRACK, 40, true, &[0xA4]).unwrap();
        w.block(AUDIO_TRACK, 60, true, &[0xA6]).unwrap();
        w.block(VIDEO_TRACK, 33, true, &[0x33]).unwrap();
        w.block(VIDEO_TRACK, 66, false, &[0x66]).unwrap();
        let file = w.finish(33).unwrap().into_inner();
        // Payloads (the last byte of each block) in time order: 33, 40, 60, 66.
        let order: Vec<u8> = file
            .windows(2)
            .filter(|p| p[0] == 0x80 || p[0] == 0x00)
            .map(|p| p[1])
            .filter(|b| [0x33, 0xA4, 0xA6, 0x66].contains(b))
            .collect();
        assert_eq!(order, [0x33, 0xA4, 0xA6, 0x66]);
    }

    #[test]
    fn a_finished_file_has_its_sizes_filled_in() {
        let mut w = writer();
        w.block(VIDEO_TRACK, 0, true, &[1, 2, 3]).unwrap();
        w.block(AUDIO_TRACK, 5, true, &[4]).unwrap();
        w.block(VIDEO_TRACK, 33, false, &[5]).unwrap();
        let file = w.finish(33).unwrap().into_inner();
        assert_eq!(&file[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        // The segment's size is known and reaches exactly the end of the file.
        let at = file
            .windows(4)
            .position(|w| w == [0x18, 0x53, 0x80, 0x67])
            .unwrap()
            + 4;
        let size = u64::from_be_bytes(file[at..at + 8].try_into().unwrap()) & !(1u64 << 56);
        assert_eq!(at as u64 + 8 + size, file.len() as u64);
        // Duration: last block at 33 ms plus one frame.
        let d = file
            .windows(3)
            .position(|w| w == [0x44, 0x89, 0x88])
            .unwrap()
            + 3;
        assert_eq!(f64::from_be_bytes(file[d..d + 8].try_into().unwrap()), 66.0);
        assert_eq!(opus_head(1, 120).len(), 19);
    }
}
