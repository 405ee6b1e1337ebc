//! A Rust y-websocket client built on the engine's client-role sync session, for interop
//! tests: connects, publishes a presence, inserts `COUNT` tokens `<PREFIX.i>` at the start
//! or end of the text (so no token can be split), waits until the text holds `EXPECT`
//! tokens, and prints `{"text": …}` as JSON.
//!
//!     yclient URL PREFIX COUNT EXPECT

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tandem_engine::protocol::codec;
use tandem_engine::{Awareness, Document, Message, Role, SyncSession};
use tokio_tungstenite::tungstenite::Message as Ws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, prefix, count, expect] = args.as_slice() else {
        bail!("usage: yclient URL PREFIX COUNT EXPECT");
    };
    let (count, expect): (u32, usize) = (count.parse()?, expect.parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("connect")?;
    let (mut sink, mut stream) = ws.split();
    let doc = Document::new("interop");
    let text = doc.text("content");
    let mut awareness = Awareness::new(doc.client_id());
    let mut session = SyncSession::new(Role::Client);
    sink.send(Ws::Binary(
        codec::encode_step1(&doc.state_vector_v1()).into(),
    ))
    .await?;
    let presence =
        serde_json::json!({"user": {"name": format!("rust-{prefix}"), "color": "#ee6352"}});
    let update = awareness.set_local_state(&presence, 0)?;
    sink.send(Ws::Binary(update.encode_frame().into())).await?;

    let mut written = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { bail!("server closed the connection") };
                if let Ws::Binary(frame) = msg? {
                    let msg = Message::decode(&frame)?;
                    let out = session.handle(&doc, &mut awareness, &msg, 0)?;
                    for r in out.reply {
                        sink.send(Ws::Binary(r.into())).await?;
                    }
                }
            }
            _ = tick.tick() => {
                if session.is_synced() && written < count {
                    let token = format!("<{prefix}.{written}>");
                    let (res, update) = doc.edit_with_update(|e| {
                        let at = if written % 2 == 0 { 0 } else { e.text_len(&text) };
                        e.insert(&text, at, &token)
                    });
                    res?;
                    if let Some(u) = update {
                        sink.send(Ws::Binary(codec::encode_update(&u).into())).await?;
                    }
                    written += 1;
                }
                let current = doc.text_string("content");
                if written == count && current.matches('<').count() >= expect {
                    println!("{}", serde_json::json!({ "text": current }));
                    sink.send(Ws::Close(None)).await.ok();
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("timed out with {} of {expect} tokens", current.matches('<').count());
                }
            }
        }
    }
}
