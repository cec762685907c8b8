//! Control messages as they come off the control stream: any bytes, framed or not. Decoding
//! may fail but never panics; whatever decodes encodes back to bytes that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsocket_proto::control::ControlMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = ControlMessage::decode_framed(data) {
        assert!(used <= data.len());
        let again = ControlMessage::decode_framed(&msg.to_bytes())
            .expect("re-encoded message decodes")
            .expect("complete");
        assert_eq!(again.0, msg);
    }
    if let Ok(msg) = ControlMessage::decode_body(data) {
        let bytes = msg.to_bytes();
        assert_eq!(ControlMessage::decode_body(&bytes[4..]), Ok(msg));
    }
    if data.len() >= 4 {
        let _ = ControlMessage::check_length([data[0], data[1], data[2], data[3]]);
    }
});
