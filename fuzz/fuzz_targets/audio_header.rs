//! Audio datagrams. Decoding may fail but never panics; whatever decodes is rebuilt into
//! the same datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsocket_proto::media::AudioHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, payload)) = AudioHeader::decode(data) {
        let rebuilt = header.datagram(payload);
        let (again, again_payload) = AudioHeader::decode(&rebuilt).expect("rebuilt decodes");
        assert_eq!(again, header);
        assert_eq!(again_payload, payload);
    }
});
