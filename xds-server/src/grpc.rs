//! gRPC framing of the ADS response stream, done here instead of by tonic's generated server.
//!
//! tonic encodes all of a stream's messages into one buffer that grows to the largest message
//! sent and keeps that size for as long as the stream lives: a proxy whose first endpoint
//! response was 30 KiB holds 30 KiB for hours, and a zone CP holds it once per proxy. Here each
//! message is encoded into a buffer of exactly its size, handed to HTTP/2, and freed once
//! written. Requests are still decoded by tonic (`Streaming`), with a small initial buffer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tonic::Status;

/// gRPC's message prefix: one compression flag byte, then the length (u32, big endian).
const PREFIX_LEN: usize = 5;

/// The largest message either way. Envoy's config can be large: far above tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// One item of a response stream: an encoded message, or the status that ends the stream.
#[derive(Debug)]
pub enum Outgoing {
    Message(Bytes),
    End(Status),
}

/// `message` as one length-prefixed gRPC message in a buffer of exactly its size.
pub fn encode_message(message: &impl prost::Message) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    if len > MAX_MESSAGE_BYTES {
        return Err(Status::resource_exhausted(format!(
            "response of {len} bytes is larger than the {MAX_MESSAGE_BYTES}-byte limit"
        )));
    }
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    // `len` is at most MAX_MESSAGE_BYTES, which fits in a u32.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message
        .encode(&mut buf)
        .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))?;
    Ok(buf.freeze())
}

/// The body of a streaming response: messages as they arrive on the channel, then the trailers
/// with the status that ended the stream (OK when the sender went away).
#[derive(Debug)]
pub struct ResponseBody {
    items: mpsc::Receiver<Outgoing>,
    ended: bool,
}

impl ResponseBody {
    pub fn new(items: mpsc::Receiver<Outgoing>) -> Self {
        Self {
            items,
            ended: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(self.items.poll_recv(cx)) {
            Some(Outgoing::Message(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Outgoing::End(status)) => status,
            None => Status::ok(""),
        };
        self.ended = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The `grpc-status` / `grpc-message` trailers for `status`.
pub fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only a message that cannot be a header value gets here: keep the code.
        map.clear();
        map.insert(Status::GRPC_STATUS, i32::from(status.code()).into());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
    use http_body_util::BodyExt;
    use prost::Message;

    #[test]
    fn a_message_is_prefixed_with_its_length_and_nothing_else() {
        let response = DeltaDiscoveryResponse {
            nonce: "n1".into(),
            type_url: "t".into(),
            ..Default::default()
        };
        let framed = encode_message(&response).expect("encodes");
        let body = response.encode_to_vec();
        assert_eq!(framed.len(), PREFIX_LEN + body.len());
        assert_eq!(framed[0], 0, "uncompressed");
        assert_eq!(&framed[1..5], &(body.len() as u32).to_be_bytes());
        assert_eq!(&framed[5..], &body[..]);
    }

    #[tokio::test]
    async fn the_body_carries_messages_then_the_ending_status() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = ResponseBody::new(rx);
        tx.send(Outgoing::Message(Bytes::from_static(b"\0\0\0\0\x01x")))
            .await
            .expect("send");
        tx.send(Outgoing::End(Status::invalid_argument("bad nonce")))
            .await
            .expect("send");
        let first = body.frame().await.expect("a frame").expect("ok");
        assert_eq!(first.into_data().expect("data"), &b"\0\0\0\0\x01x"[..]);
        let last = body.frame().await.expect("a frame").expect("ok");
        let trailers = last.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "3");
        assert_eq!(trailers["grpc-message"], "bad%20nonce");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_whose_sender_is_gone_ends_ok() {
        let (tx, rx) = mpsc::channel::<Outgoing>(1);
        drop(tx);
        let mut body = ResponseBody::new(rx);
        let trailers = body
            .frame()
            .await
            .expect("a frame")
            .expect("ok")
            .into_trailers()
            .expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
    }
}
