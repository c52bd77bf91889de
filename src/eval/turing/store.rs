//! Durable votes in SQLite.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so every committed
//! transaction's WAL frames are fsynced before `COMMIT` returns, and the server answers 2xx only
//! after that: a vote that got a 2xx survives a `kill -9` (or a power cut) of the server. A crash
//! mid-transaction leaves an uncommitted tail in the WAL that SQLite ignores on the next open.
//!
//! Replays: each time a pair is shown, [`VoteStore::issue`] stores a fresh random 128-bit token with
//! the pair id and which side the human poem is on. A vote must carry a token issued for that pair;
//! the `votes` table holds each token at most once (`UNIQUE`), so the same token sent twice is a
//! replay and is refused. Tokens survive restarts (they live in the same database).

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, Result};

/// A vote token handed to the page showing a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// 32 hex digits, random.
    pub token: String,
    /// True when the human poem is shown on the left.
    pub human_left: bool,
}

/// A stored vote.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteOutcome {
    /// Its row id.
    pub id: i64,
    /// True when the visitor took the machine poem for the human one.
    pub machine_chosen: bool,
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VoteError {
    /// No such token was issued.
    #[error("unknown vote token: load a pair first (GET /v1/turing/pair)")]
    UnknownToken,
    /// The token was issued for another pair.
    #[error("this vote token was issued for another pair")]
    WrongPair,
    /// The token was used already.
    #[error("this vote was already counted (each shown pair takes one vote)")]
    Replayed,
    /// The database failed.
    #[error("vote database: {0}")]
    Db(String),
}

/// Unused tokens older than this are deleted (a page left open longer must load a new pair).
pub const TOKEN_TTL_SECS: f64 = 24.0 * 3600.0;

/// The vote database (one connection behind a mutex: votes are tiny and serialized anyway).
pub struct VoteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    issued: std::sync::atomic::AtomicU64,
}

fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::file(path, format!("vote database: {e}"))
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl VoteStore {
    /// Opens (or creates) the database at `path`: WAL mode, `synchronous=FULL`, the tables.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| db_err(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::file(path, format!("vote database: cannot use WAL mode (journal_mode is {mode})")));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS tokens (
                 token TEXT PRIMARY KEY,
                 pair_id TEXT NOT NULL,
                 human_left INTEGER NOT NULL,
                 issued_at REAL NOT NULL
             );
             CREATE TABLE IF NOT EXISTS votes (
                 id INTEGER PRIMARY KEY,
                 pair_id TEXT NOT NULL,
                 form TEXT NOT NULL,
                 choice TEXT NOT NULL CHECK (choice IN ('human', 'machine')),
                 token TEXT NOT NULL UNIQUE,
                 voted_at REAL NOT NULL
             );",
        )
        .map_err(|e| db_err(path, e))?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf(), issued: Default::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a one-time vote token for `pair_id`, with a random side for the human poem. Every
    /// 256th call also deletes the unused tokens older than `TOKEN_TTL_SECS` (a day), so the tokens of
    /// pages never voted on do not pile up.
    pub fn issue(&self, pair_id: &str) -> Result<Issued> {
        let mut rng = rand::rng();
        let token = format!("{:032x}", rng.random::<u128>());
        let human_left: bool = rng.random();
        let conn = self.lock();
        if self.issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 256 == 255 {
            conn.execute("DELETE FROM tokens WHERE issued_at < ?1 AND token NOT IN (SELECT token FROM votes)", [now() - TOKEN_TTL_SECS])
                .map_err(|e| db_err(&self.path, e))?;
        }
        conn.execute(
            "INSERT INTO tokens (token, pair_id, human_left, issued_at) VALUES (?1, ?2, ?3, ?4)",
            params![token, pair_id, human_left, now()],
        )
        .map_err(|e| db_err(&self.path, e))?;
        Ok(Issued { token, human_left })
    }

    /// Records a vote: the visitor, shown pair `pair_id` (of form `form`) with `token`, picked the
    /// left poem as the human one when `picked_left`. Committed (fsynced) when this returns `Ok`.
    pub fn vote(&self, pair_id: &str, form: &str, token: &str, picked_left: bool) -> std::result::Result<VoteOutcome, VoteError> {
        let db = |e: rusqlite::Error| VoteError::Db(e.to_string());
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
        let issued: Option<(String, bool)> = tx
            .query_row("SELECT pair_id, human_left FROM tokens WHERE token = ?1", [token], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        let Some((issued_pair, human_left)) = issued else { return Err(VoteError::UnknownToken) };
        if issued_pair != pair_id {
            return Err(VoteError::WrongPair);
        }
        let used: Option<i64> = tx.query_row("SELECT id FROM votes WHERE token = ?1", [token], |r| r.get(0)).optional().map_err(db)?;
        if used.is_some() {
            return Err(VoteError::Replayed);
        }
        let machine_chosen = picked_left != human_left;
        let choice = if machine_chosen { "machine" } else { "human" };
        tx.execute(
            "INSERT INTO votes (pair_id, form, choice, token, voted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![pair_id, form, choice, token, now()],
        )
        .map_err(db)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(db)?;
        Ok(VoteOutcome { id, machine_chosen })
    }

    /// Every vote as `(form, machine_chosen)`, in order.
    pub fn votes(&self) -> Result<Vec<(String, bool)>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT form, choice FROM votes ORDER BY id").map_err(|e| db_err(&self.path, e))?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)? == "machine"))).map_err(|e| db_err(&self.path, e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| db_err(&self.path, e))
    }

    /// Number of votes stored.
    pub fn count(&self) -> Result<u64> {
        self.lock().query_row("SELECT COUNT(*) FROM votes", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(|e| db_err(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_votes_once_for_its_pair() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = VoteStore::open(&dir.path().join("v.db"))?;
        let t = store.issue("h001")?;
        assert_eq!(store.vote("h002", "五言绝句", &t.token, true), Err(VoteError::WrongPair));
        assert_eq!(store.vote("h001", "五言绝句", "nope", true), Err(VoteError::UnknownToken));
        let v = store.vote("h001", "五言绝句", &t.token, t.human_left)?;
        assert!(!v.machine_chosen);
        assert_eq!(store.vote("h001", "五言绝句", &t.token, true), Err(VoteError::Replayed));
        assert_eq!(store.count()?, 1);
        drop(store);
        let again = VoteStore::open(&dir.path().join("v.db"))?;
        assert_eq!(again.votes()?, vec![("五言绝句".to_string(), false)]);
        Ok(())
    }
}
