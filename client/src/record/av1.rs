//! Just enough AV1 bitstream parsing to store frames in a container: splitting a temporal unit
//! into OBUs, dropping the ones Matroska forbids, and building the `av1C` configuration record
//! from the sequence header (AV1 spec §5.3, §5.5; AV1-ISOBMFF §2.3).

use thiserror::Error;

pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_PADDING: u8 = 15;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Av1Error {
    #[error("OBU header has its forbidden bit set")]
    ForbiddenBit,
    #[error("OBU size field is malformed")]
    BadSize,
    #[error("OBU runs past the end of the frame")]
    Overrun,
    #[error("sequence header is truncated")]
    ShortSequenceHeader,
    #[error("no sequence header in this frame")]
    NoSequenceHeader,
}

/// One OBU of a temporal unit.
#[derive(Debug)]
pub struct Obu<'a> {
    pub kind: u8,
    /// The whole OBU, header included.
    pub bytes: &'a [u8],
    pub payload: &'a [u8],
}

/// A leb128 number and its length: running out of bytes is an overrun, eight bytes without
/// an end a malformed size.
fn leb128(d: &[u8]) -> Result<(u64, usize), Av1Error> {
    let mut v = 0u64;
    for i in 0..8 {
        let b = *d.get(i).ok_or(Av1Error::Overrun)?;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(Av1Error::BadSize)
}

/// Splits a temporal unit (low-overhead bitstream format, as libaom and rav1e emit it) into OBUs.
pub fn obus(mut d: &[u8]) -> Result<Vec<Obu<'_>>, Av1Error> {
    let mut out = Vec::new();
    while let Some(&h) = d.first() {
        if h & 0x80 != 0 {
            return Err(Av1Error::ForbiddenBit);
        }
        let kind = (h >> 3) & 0x0f;
        let extension = (h >> 2) & 1 == 1;
        let has_size = (h >> 1) & 1 == 1;
        let mut header_len = 1 + extension as usize;
        let size = if has_size {
            let (s, n) = leb128(d.get(header_len..).ok_or(Av1Error::Overrun)?)?;
            header_len += n;
            usize::try_from(s).map_err(|_| Av1Error::BadSize)?
        } else {
            d.len().checked_sub(header_len).ok_or(Av1Error::Overrun)?
        };
        let total = header_len.checked_add(size).ok_or(Av1Error::BadSize)?;
        if total > d.len() {
            return Err(Av1Error::Overrun);
        }
        out.push(Obu {
            kind,
            bytes: &d[..total],
            payload: &d[header_len..total],
        });
        d = &d[total..];
    }
    Ok(out)
}

/// A temporal unit as a Matroska block holds it: without temporal delimiters and padding.
pub fn for_matroska(tu: &[u8]) -> Result<Vec<u8>, Av1Error> {
    let mut v = Vec::with_capacity(tu.len());
    for o in obus(tu)? {
        if o.kind != OBU_TEMPORAL_DELIMITER && o.kind != OBU_PADDING {
            v.extend_from_slice(o.bytes);
        }
    }
    Ok(v)
}

struct Bits<'a> {
    d: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn f(&mut self, n: usize) -> Result<u32, Av1Error> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self
                .d
                .get(self.pos / 8)
                .ok_or(Av1Error::ShortSequenceHeader)?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1) as u32;
            self.pos += 1;
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, Av1Error> {
        Ok(self.f(1)? == 1)
    }

    fn uvlc(&mut self) -> Result<(), Av1Error> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros >= 32 {
                return Ok(());
            }
        }
        self.f(zeros)?;
        Ok(())
    }
}

/// What a container needs from the sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceInfo {
    pub profile: u8,
    pub level: u8,
    pub tier: u8,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub mono: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub chroma_sample_position: u8,
    pub max_width: u32,
    pub max_height: u32,
}

/// Parses a sequence_header_obu() payload up to its colour configuration (AV1 spec §5.5).
pub fn parse_sequence_header(p: &[u8]) -> Result<SequenceInfo, Av1Error> {
    let mut b = Bits { d: p, pos: 0 };
    let profile = b.f(3)? as u8;
    let _still_picture = b.f(1)?;
    let reduced = b.flag()?;
    let (level, tier);
    if reduced {
        level = b.f(5)? as u8;
        tier = 0;
    } else {
        let timing_info = b.flag()?;
        let mut decoder_model_info = false;
        let mut buffer_delay_len = 0;
        if timing_info {
            b.f(32)?; // num_units_in_display_tick
            b.f(32)?; // time_scale
            if b.flag()? {
                b.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info = b.flag()?;
            if decoder_model_info {
                buffer_delay_len = b.f(5)? as usize + 1;
                b.f(32)?;
                b.f(5)?;
                b.f(5)?;
            }
        }
        let initial_display_delay = b.flag()?;
        let operating_points = b.f(5)? + 1;
        let (mut first_level, mut first_tier) = (0, 0);
        for i in 0..operating_points {
            b.f(12)?; // operating_point_idc
            let lvl = b.f(5)? as u8;
            let t = if lvl > 7 { b.f(1)? as u8 } else { 0 };
            if decoder_model_info && b.flag()? {
                b.f(buffer_delay_len)?;
                b.f(buffer_delay_len)?;
                b.f(1)?;
            }
            if initial_display_delay && b.flag()? {
                b.f(4)?;
            }
            if i == 0 {
                (first_level, first_tier) = (lvl, t);
            }
        }
        (level, tier) = (first_level, first_tier);
    }
    let width_bits = b.f(4)? as usize + 1;
    let height_bits = b.f(4)? as usize + 1;
    let max_width = b.f(width_bits)? + 1;
    let max_height = b.f(height_bits)? + 1;
    if !reduced && b.flag()? {
        // frame_id_numbers_present
        b.f(4)?;
        b.f(3)?;
    }
    b.f(3)?; // 128x128 superblock, filter intra, intra edge filter
    if !reduced {
        b.f(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = b.flag()?;
        if order_hint {
            b.f(2)?; // jnt_comp, ref_frame_mvs
        }
        let force_screen_content_tools = if b.flag()? { 2 } else { b.f(1)? };
        if force_screen_content_tools > 0 && !b.flag()? {
            b.f(1)?; // seq_force_integer_mv
        }
        if order_hint {
            b.f(3)?;
        }
    }
    b.f(3)?; // superres, cdef, loop restoration
             // color_config()
    let high_bitdepth = b.flag()?;
    let twelve_bit = profile == 2 && high_bitdepth && b.flag()?;
    let mono = profile != 1 && b.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if b.flag()? {
        primaries = b.f(8)?;
        transfer = b.f(8)?;
        matrix = b.f(8)?;
    }
    let (subsampling_x, subsampling_y);
    let mut chroma_sample_position = 0;
    if mono {
        b.f(1)?; // color_range
        (subsampling_x, subsampling_y) = (true, true);
    } else if primaries == 1 && transfer == 13 && matrix == 0 {
        (subsampling_x, subsampling_y) = (false, false);
    } else {
        b.f(1)?; // color_range
        (subsampling_x, subsampling_y) = match profile {
            0 => (true, true),
            1 => (false, false),
            _ if twelve_bit => {
                let x = b.flag()?;
                (x, x && b.flag()?)
            }
            _ => (true, false),
        };
        if subsampling_x && subsampling_y {
            chroma_sample_position = b.f(2)? as u8;
        }
    }
    Ok(SequenceInfo {
        profile,
        level,
        tier,
        high_bitdepth,
        twelve_bit,
        mono,
        subsampling_x,
        subsampling_y,
        chroma_sample_position,
        max_width,
        max_height,
    })
}

/// The `av1C` record (Matroska's V_AV1 CodecPrivate) from a keyframe's temporal unit: four
/// bytes of configuration, then the sequence header OBU.
pub fn av1c(tu: &[u8]) -> Result<(Vec<u8>, SequenceInfo), Av1Error> {
    let obu = obus(tu)?
        .into_iter()
        .find(|o| o.kind == OBU_SEQUENCE_HEADER)
        .ok_or(Av1Error::NoSequenceHeader)?;
    let s = parse_sequence_header(obu.payload)?;
    let mut record = vec![
        0x81, // marker 1, version 1
        (s.profile << 5) | s.level,
        (s.tier << 7)
            | ((s.high_bitdepth as u8) << 6)
            | ((s.twelve_bit as u8) << 5)
            | ((s.mono as u8) << 4)
            | ((s.subsampling_x as u8) << 3)
            | ((s.subsampling_y as u8) << 2)
            | s.chroma_sample_position,
        0x00, // no initial presentation delay
    ];
    record.extend_from_slice(obu.bytes);
    Ok((record, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_obus_and_drops_what_matroska_forbids() {
        // A temporal delimiter (type 2, size 0), then a padding OBU (15) of 2 bytes, then a
        // frame OBU (6) of 3 bytes.
        let tu = [0x12, 0x00, 0x7a, 0x02, 0xaa, 0xbb, 0x32, 0x03, 1, 2, 3];
        let kinds: Vec<u8> = obus(&tu).unwrap().iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [2, 15, 6]);
        assert_eq!(for_matroska(&tu).unwrap(), [0x32, 0x03, 1, 2, 3]);
    }

    #[test]
    fn malformed_units_are_errors_not_panics() {
        assert_eq!(obus(&[0x80]).unwrap_err(), Av1Error::ForbiddenBit);
        assert_eq!(obus(&[0x32, 0x05, 1]).unwrap_err(), Av1Error::Overrun);
        assert_eq!(obus(&[0x32]).unwrap_err(), Av1Error::Overrun);
        assert_eq!(obus(&[0x32, 0xff, 0xff]).unwrap_err(), Av1Error::Overrun);
        assert_eq!(
            obus(&[0x32, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err(),
            Av1Error::BadSize
        );
        assert_eq!(av1c(&[0x12, 0x00]).unwrap_err(), Av1Error::NoSequenceHeader);
        // A sequence header OBU with a one-byte payload.
        assert_eq!(
            av1c(&[0x0a, 0x01, 0x00]).unwrap_err(),
            Av1Error::ShortSequenceHeader
        );
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = obus(&junk);
            let _ = av1c(&junk);
        }
    }
}
