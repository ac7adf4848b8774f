//! The audit log: append-only (the schema refuses updates and deletes).

use sqlx::Row;

use super::{QueryContext, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub event: AuditEvent,
}

queries! {
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const OP: &str = "append audit log";
        // Many rows per statement: one round trip to the database for a
        // whole batch of token issuances.
        const ROWS: usize = 100;
        for chunk in events.chunks(ROWS) {
            let mut query = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO audit_log (at, actor, action, subject, outcome, client_ip) ",
            );
            query.push_values(chunk, |mut row, event| {
                row.push_bind(event.at)
                    .push_bind(event.actor.clone())
                    .push_bind(event.action.clone())
                    .push_bind(event.subject.clone())
                    .push_bind(event.outcome.clone())
                    .push_bind(event.client_ip.clone());
            });
            query.build().execute(&self.pool).await.ctx(OP)?;
        }
        Ok(())
    }

    /// The newest entries first, `limit` of them, older than `before` if set.
    pub async fn audit_log(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, outcome, client_ip FROM audit_log
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("read audit log")?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    event: AuditEvent {
                        at: row.try_get("at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        outcome: row.try_get("outcome")?,
                        client_ip: row.try_get("client_ip")?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx("read audit log")
    }
}
