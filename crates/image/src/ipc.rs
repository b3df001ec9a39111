//! The IPC objects of a tree's IPC namespace at a save: System V shared memory segments,
//! semaphore sets and message queues, and POSIX message queues. A section of a tree's record,
//! written by the init.
//!
//! Each tree runs in an IPC namespace of its own, which ends with the tree at a failure (as
//! the machine's IPC state ends at a reboot): the init keeps every object of the namespace
//! with its id, key, owner, mode and contents, and recreates them in the next namespace
//! before any member resumes. Shared memory contents live in files of the image's
//! [`IPC_DIR`]; messages and semaphore values in the record itself.

use crate::Error;
use crate::codec::{Reader, Writer};

/// Section tag of [`IpcState`] in a tree's `meta`.
pub const TAG_IPC: u32 = 0x202;
/// Version of its encoding.
pub const IPC_VERSION: u32 = 1;
/// Directory of the shared memory segments' contents in a tree's image.
pub const IPC_DIR: &str = "ipc";

/// What every System V object has (`struct ipc_perm`), as far as it can be given back:
/// the creator's uid and gid are the recreating init's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpcPerm {
    /// The key (`IPC_PRIVATE`, 0, for a private object or a removed segment).
    pub key: i32,
    pub id: i32,
    pub uid: u32,
    pub gid: u32,
    /// The permission bits and, for a segment, `SHM_DEST` and `SHM_LOCKED`.
    pub mode: u32,
}

/// A System V shared memory segment (`shmget`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShmSegment {
    pub perm: IpcPerm,
    pub size: u64,
    /// The contents' file name in [`IPC_DIR`].
    pub file: Vec<u8>,
}

/// `shm_perm.mode` bit of a segment removed with `IPC_RMID` while still attached.
pub const SHM_DEST: u32 = 0o1000;
/// `shm_perm.mode` bit of a segment locked with `SHM_LOCK`.
pub const SHM_LOCKED: u32 = 0o2000;

/// A System V semaphore set (`semget`) and its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SemSet {
    pub perm: IpcPerm,
    pub values: Vec<u16>,
}

/// One message of a queue: its type (System V) or priority (POSIX), and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub kind: i64,
    pub text: Vec<u8>,
}

/// A System V message queue (`msgget`) and its messages, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsgQueue {
    pub perm: IpcPerm,
    /// Its capacity in bytes (`msg_qbytes`).
    pub qbytes: u64,
    pub messages: Vec<Message>,
}

/// A POSIX message queue (`mq_open`) and its messages in the order `mq_receive` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosixQueue {
    /// Its name, without the leading `/`.
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub max_messages: i64,
    pub message_size: i64,
    pub messages: Vec<Message>,
}

/// Every IPC object of a tree's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpcState {
    pub segments: Vec<ShmSegment>,
    pub semaphores: Vec<SemSet>,
    pub queues: Vec<MsgQueue>,
    pub posix_queues: Vec<PosixQueue>,
}

impl IpcState {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
            && self.semaphores.is_empty()
            && self.queues.is_empty()
            && self.posix_queues.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(IPC_VERSION);
        w.u64(self.segments.len() as u64);
        for s in &self.segments {
            put_perm(&mut w, &s.perm);
            w.u64(s.size);
            w.bytes(&s.file);
        }
        w.u64(self.semaphores.len() as u64);
        for s in &self.semaphores {
            put_perm(&mut w, &s.perm);
            w.u64(s.values.len() as u64);
            for v in &s.values {
                w.u32(u32::from(*v));
            }
        }
        w.u64(self.queues.len() as u64);
        for q in &self.queues {
            put_perm(&mut w, &q.perm);
            w.u64(q.qbytes);
            put_messages(&mut w, &q.messages);
        }
        w.u64(self.posix_queues.len() as u64);
        for q in &self.posix_queues {
            w.bytes(&q.name);
            w.u32(q.mode);
            w.u32(q.uid);
            w.u32(q.gid);
            w.i64(q.max_messages);
            w.i64(q.message_size);
            put_messages(&mut w, &q.messages);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<IpcState, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != IPC_VERSION {
            return Err(Error::SectionVersion {
                section: "ipc",
                version,
            });
        }
        let mut st = IpcState::default();
        for _ in 0..r.len_prefix()? {
            let perm = get_perm(&mut r)?;
            let size = r.u64()?;
            let file = r.bytes()?;
            if !plain_name(&file) {
                return Err(Error::Invalid("shared memory segment file"));
            }
            st.segments.push(ShmSegment { perm, size, file });
        }
        for _ in 0..r.len_prefix()? {
            let perm = get_perm(&mut r)?;
            let mut values = Vec::new();
            for _ in 0..r.len_prefix()? {
                let v = r.u32()?;
                values.push(u16::try_from(v).map_err(|_| Error::Invalid("semaphore value"))?);
            }
            st.semaphores.push(SemSet { perm, values });
        }
        for _ in 0..r.len_prefix()? {
            let perm = get_perm(&mut r)?;
            let qbytes = r.u64()?;
            let messages = get_messages(&mut r)?;
            st.queues.push(MsgQueue {
                perm,
                qbytes,
                messages,
            });
        }
        for _ in 0..r.len_prefix()? {
            let name = r.bytes()?;
            if !plain_name(&name) {
                return Err(Error::Invalid("POSIX message queue name"));
            }
            st.posix_queues.push(PosixQueue {
                name,
                mode: r.u32()?,
                uid: r.u32()?,
                gid: r.u32()?,
                max_messages: r.i64()?,
                message_size: r.i64()?,
                messages: get_messages(&mut r)?,
            });
        }
        Ok(st)
    }
}

/// A file or queue name: one path component, no NUL.
fn plain_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'/') && !name.contains(&0) && name != b"." && name != b".."
}

fn put_perm(w: &mut Writer, p: &IpcPerm) {
    w.i32(p.key);
    w.i32(p.id);
    w.u32(p.uid);
    w.u32(p.gid);
    w.u32(p.mode);
}

fn get_perm(r: &mut Reader) -> Result<IpcPerm, Error> {
    let p = IpcPerm {
        key: r.i32()?,
        id: r.i32()?,
        uid: r.u32()?,
        gid: r.u32()?,
        mode: r.u32()?,
    };
    if p.id < 0 {
        return Err(Error::Invalid("IPC object id"));
    }
    Ok(p)
}

fn put_messages(w: &mut Writer, messages: &[Message]) {
    w.u64(messages.len() as u64);
    for m in messages {
        w.i64(m.kind);
        w.bytes(&m.text);
    }
}

fn get_messages(r: &mut Reader) -> Result<Vec<Message>, Error> {
    let mut out = Vec::new();
    for _ in 0..r.len_prefix()? {
        out.push(Message {
            kind: r.i64()?,
            text: r.bytes()?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IpcState {
        let perm = |id| IpcPerm {
            key: 0x1234,
            id,
            uid: 1000,
            gid: 100,
            mode: 0o640 | SHM_DEST,
        };
        IpcState {
            segments: vec![ShmSegment {
                perm: perm(32768),
                size: 1 << 20,
                file: b"3-shm-32768".to_vec(),
            }],
            semaphores: vec![SemSet {
                perm: perm(1),
                values: vec![0, 1, 32767],
            }],
            queues: vec![MsgQueue {
                perm: perm(2),
                qbytes: 16384,
                messages: vec![Message {
                    kind: 7,
                    text: b"hello".to_vec(),
                }],
            }],
            posix_queues: vec![PosixQueue {
                name: b"jobs".to_vec(),
                mode: 0o600,
                uid: 0,
                gid: 0,
                max_messages: 10,
                message_size: 64,
                messages: vec![Message {
                    kind: 3,
                    text: vec![0; 64],
                }],
            }],
        }
    }

    #[test]
    fn the_ipc_state_round_trips() {
        let st = sample();
        assert_eq!(IpcState::decode(&st.encode()).unwrap(), st);
        assert!(IpcState::default().is_empty() && !st.is_empty());
    }

    #[test]
    fn truncated_or_odd_records_are_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(
                IpcState::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut bad = sample();
        bad.posix_queues[0].name = b"../x".to_vec();
        assert!(IpcState::decode(&bad.encode()).is_err());
        let mut bad = sample();
        bad.segments[0].file = b"a/b".to_vec();
        assert!(IpcState::decode(&bad.encode()).is_err());
        let mut bad = sample();
        bad.queues[0].perm.id = -1;
        assert!(IpcState::decode(&bad.encode()).is_err());
    }
}
