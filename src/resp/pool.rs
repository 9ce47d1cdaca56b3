//! Connections to one endpoint, lent out one batch at a time, so many tasks share a few
//! sockets without waiting on each other's replies.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Conn;

pub struct Pool {
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection lent by a [`Pool`]; it goes back when dropped.
pub struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(conns: Vec<Conn>) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Mutex::new(conns),
        }
    }

    /// Waits for an idle connection.
    pub async fn get(&self) -> Lease<'_> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let conn = self
            .idle
            .lock()
            .expect("a pool's lock is never poisoned")
            .pop();
        Lease {
            pool: self,
            conn,
            _permit: permit,
        }
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a permit guarantees an idle connection")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a permit guarantees an idle connection")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .expect("a pool's lock is never poisoned")
                .push(conn);
        }
    }
}
