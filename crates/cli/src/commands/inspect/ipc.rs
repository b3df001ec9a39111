//! The IPC objects of a tree's namespace at its save (the record's `ipc` section): one row
//! per object in text, an `ipc` object in JSON.

use zhuque_image::Meta;
use zhuque_image::ipc::{IpcPerm, IpcState, Message, SHM_DEST, SHM_LOCKED, TAG_IPC};

use crate::json::Value;

/// The section, if the record has one that decodes.
fn state(m: &Meta) -> Option<IpcState> {
    IpcState::decode(m.section(TAG_IPC)?).ok()
}

fn perm_text(p: &IpcPerm) -> String {
    format!(
        "key {:#010x}, mode {:o}, owner {}:{}",
        p.key as u32,
        p.mode & 0o777,
        p.uid,
        p.gid
    )
}

fn bytes_of(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.text.len()).sum()
}

/// `ipc:` rows of `inspect`'s text output.
pub fn text_rows(m: &Meta) -> Vec<(&'static str, String)> {
    let Some(st) = state(m) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for s in &st.segments {
        let mut flags = String::new();
        if s.perm.mode & SHM_DEST != 0 {
            flags.push_str(", removed while attached");
        }
        if s.perm.mode & SHM_LOCKED != 0 {
            flags.push_str(", locked");
        }
        rows.push((
            "ipc",
            format!(
                "shm {}: {} bytes, {}{flags}",
                s.perm.id,
                s.size,
                perm_text(&s.perm)
            ),
        ));
    }
    for s in &st.semaphores {
        rows.push((
            "ipc",
            format!(
                "sem {}: values {:?}, {}",
                s.perm.id,
                s.values,
                perm_text(&s.perm)
            ),
        ));
    }
    for q in &st.queues {
        rows.push((
            "ipc",
            format!(
                "msg {}: {} messages ({} bytes of {}), {}",
                q.perm.id,
                q.messages.len(),
                bytes_of(&q.messages),
                q.qbytes,
                perm_text(&q.perm)
            ),
        ));
    }
    for q in &st.posix_queues {
        rows.push((
            "ipc",
            format!(
                "mqueue /{}: {} messages of at most {} bytes (capacity {}), mode {:o}, owner {}:{}",
                String::from_utf8_lossy(&q.name),
                q.messages.len(),
                q.message_size,
                q.max_messages,
                q.mode & 0o777,
                q.uid,
                q.gid
            ),
        ));
    }
    rows
}

fn perm_json(p: &IpcPerm) -> Vec<(&'static str, Value)> {
    vec![
        ("id", Value::int(p.id)),
        ("key", Value::int(p.key)),
        ("mode", Value::int(p.mode)),
        ("uid", Value::int(p.uid)),
        ("gid", Value::int(p.gid)),
    ]
}

/// The `ipc` value of `inspect --json`: null without the section.
pub fn json(m: &Meta) -> Value {
    let Some(st) = state(m) else {
        return Value::Null;
    };
    let with = |mut fields: Vec<(&'static str, Value)>, more: Vec<(&'static str, Value)>| {
        fields.extend(more);
        Value::Object(fields)
    };
    Value::Object(vec![
        (
            "segments",
            Value::Array(
                st.segments
                    .iter()
                    .map(|s| {
                        with(
                            perm_json(&s.perm),
                            vec![
                                ("size", Value::int(s.size)),
                                ("file", Value::bytes(&s.file)),
                            ],
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "semaphores",
            Value::Array(
                st.semaphores
                    .iter()
                    .map(|s| {
                        let values = s.values.iter().map(|v| Value::int(*v)).collect();
                        with(perm_json(&s.perm), vec![("values", Value::Array(values))])
                    })
                    .collect(),
            ),
        ),
        (
            "message_queues",
            Value::Array(
                st.queues
                    .iter()
                    .map(|q| {
                        with(
                            perm_json(&q.perm),
                            vec![
                                ("qbytes", Value::int(q.qbytes)),
                                ("messages", Value::int(q.messages.len() as u64)),
                                ("bytes", Value::int(bytes_of(&q.messages) as u64)),
                            ],
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "posix_queues",
            Value::Array(
                st.posix_queues
                    .iter()
                    .map(|q| {
                        Value::Object(vec![
                            ("name", Value::bytes(&q.name)),
                            ("mode", Value::int(q.mode)),
                            ("uid", Value::int(q.uid)),
                            ("gid", Value::int(q.gid)),
                            ("max_messages", Value::int(q.max_messages)),
                            ("message_size", Value::int(q.message_size)),
                            ("messages", Value::int(q.messages.len() as u64)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}
