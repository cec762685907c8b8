//! The header at the start of every frame stream. Decoding may fail but never panics;
//! whatever decodes encodes back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsocket_proto::media::FrameHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = FrameHeader::decode(data) {
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(FrameHeader::decode(&out), Ok(header));
    }
});
