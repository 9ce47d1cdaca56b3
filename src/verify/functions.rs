//! Function libraries (`FUNCTION LIST WITHCODE`): server state beside the keys, which a
//! migration must carry too, compared by library name and code.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::resp::Frame;

use super::sides::Sides;
use super::{Side, VerifyError};

/// How the two sides' function libraries compare.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Functions {
    /// Both sides could be asked (FUNCTION exists on both).
    pub checked: bool,
    /// The same libraries with the same code on both sides.
    pub parity: bool,
    pub source: usize,
    pub target: usize,
    pub missing_on_target: Vec<String>,
    pub extra_on_target: Vec<String>,
    /// On both sides, with different code.
    pub different: Vec<String>,
}

/// Library name → code, from a `FUNCTION LIST WITHCODE` reply.
fn libraries(reply: Frame<'_>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for lib in reply.items().into_iter().flatten() {
        let mut fields = lib.items().into_iter().flatten();
        let (mut name, mut code) = (None, Vec::new());
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            match k.bytes() {
                Some(b"library_name") => name = Some(v.text()),
                Some(b"library_code") => code = v.bytes().unwrap_or_default().to_vec(),
                _ => {}
            }
        }
        if let Some(name) = name {
            out.insert(name, code);
        }
    }
    out
}

impl Sides {
    async fn libraries(
        &self,
        side: Side,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, VerifyError> {
        let mut conn = self.reader(side).any().await;
        let mut found = None;
        let mut p = crate::resp::Pipeline::new();
        p.cmd(&[b"FUNCTION", b"LIST", b"WITHCODE"]);
        conn.run(&p, |_, r| {
            // An error: this server has no FUNCTION command (before Redis 7).
            if r.error().is_none() {
                found = Some(libraries(r));
            }
            Ok(())
        })
        .await
        .map_err(|e| self.err(side, e))?;
        Ok(found)
    }

    /// Compares the function libraries of both sides.
    pub(super) async fn functions(&self) -> Result<Functions, VerifyError> {
        let (Some(src), Some(dst)) = (
            self.libraries(Side::Source).await?,
            self.libraries(Side::Target).await?,
        ) else {
            return Ok(Functions {
                parity: true,
                ..Functions::default()
            });
        };
        let mut f = Functions {
            checked: true,
            source: src.len(),
            target: dst.len(),
            ..Functions::default()
        };
        for (name, code) in &src {
            match dst.get(name) {
                None => f.missing_on_target.push(name.clone()),
                Some(other) if other != code => f.different.push(name.clone()),
                Some(_) => {}
            }
        }
        f.extra_on_target = dst
            .keys()
            .filter(|n| !src.contains_key(*n))
            .cloned()
            .collect();
        f.parity = f.missing_on_target.is_empty()
            && f.extra_on_target.is_empty()
            && f.different.is_empty();
        Ok(f)
    }
}
