//! The tenant directory operators push, with each tenant's members.

use sqlx::Row;

use super::{QueryContext, RowsAffected, StoreError, role_of};
use crate::verify::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub email: String,
    pub role: Role,
}

/// A tenant as an operator registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub name: String,
    pub display_name: String,
    pub url: String,
    pub phase: String,
    /// The cluster whose credential registered it (never from the body).
    pub cluster: String,
    /// The Tenant object's Kubernetes `metadata.uid`.
    pub uid: String,
    /// The OpenID client's one redirect URI (exact match).
    pub redirect_uri: String,
    /// Where back-channel logout tokens are POSTed.
    pub backchannel_logout_uri: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub id: String,
    pub display_name: String,
    pub url: String,
    pub phase: String,
    pub cluster: String,
    pub uid: String,
    /// The OpenID client's one redirect URI (exact match); derived from
    /// `url` for a record stored before it was registered.
    pub redirect_uri: String,
    /// Where back-channel logout tokens are POSTed (derived likewise).
    pub backchannel_logout_uri: String,
    pub members: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

/// Another cluster already registered this tenant name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedElsewhere {
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyTenant {
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub url: String,
    pub phase: String,
}

/// `<url>/auth/callback`: the redirect URI of a tenant that registered none.
pub fn derived_redirect_uri(url: &str) -> String {
    format!("{}/auth/callback", url.trim_end_matches('/'))
}

/// `<url>/auth/backchannel-logout`: the back-channel logout URI of a tenant
/// that registered none.
pub fn derived_backchannel_logout_uri(url: &str) -> String {
    format!("{}/auth/backchannel-logout", url.trim_end_matches('/'))
}

fn tenant_of<R>(row: &R) -> Result<Tenant, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let url: String = row.try_get("url")?;
    let redirect_uri: String = row.try_get("redirect_uri")?;
    let backchannel_logout_uri: String = row.try_get("backchannel_logout_uri")?;
    Ok(Tenant {
        name: row.try_get("name")?,
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        redirect_uri: if redirect_uri.is_empty() {
            derived_redirect_uri(&url)
        } else {
            redirect_uri
        },
        backchannel_logout_uri: if backchannel_logout_uri.is_empty() {
            derived_backchannel_logout_uri(&url)
        } else {
            backchannel_logout_uri
        },
        url,
        phase: row.try_get("phase")?,
        cluster: row.try_get("cluster")?,
        uid: row.try_get("uid")?,
        members: row.try_get("members")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

queries! {
    /// Registers or updates a tenant and replaces its members, unless another
    /// cluster owns the name.
    pub async fn register_tenant(
        &self,
        spec: &TenantSpec,
        new_id: &str,
        now: i64,
    ) -> Result<Result<Registered, OwnedElsewhere>, StoreError> {
        const OP: &str = "register tenant";
        let mut tx = self.pool.begin().await.ctx(OP)?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (name, id, display_name, url, phase, cluster, created_at, updated_at, uid,
                                  redirect_uri, backchannel_logout_uri)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(new_id)
        .bind(&spec.display_name)
        .bind(&spec.url)
        .bind(&spec.phase)
        .bind(&spec.cluster)
        .bind(now)
        .bind(&spec.uid)
        .bind(&spec.redirect_uri)
        .bind(&spec.backchannel_logout_uri)
        .execute(&mut *tx)
        .await
        .ctx(OP)?
        .rows_affected()
            == 1;
        let outcome = if inserted {
            Registered::Created
        } else {
            let owner: String = sqlx::query("SELECT cluster FROM tenants WHERE name = $1")
                .bind(&spec.name)
                .fetch_one(&mut *tx)
                .await
                .ctx(OP)?
                .try_get("cluster")
                .ctx(OP)?;
            if owner != spec.cluster {
                return Ok(Err(OwnedElsewhere { owner }));
            }
            // Scoped to the owner in the statement too: the record is only
            // ever written by the cluster that registered it.
            sqlx::query(
                "UPDATE tenants SET display_name = $2, url = $3, phase = $4, updated_at = $5, uid = $6,
                                    redirect_uri = $8, backchannel_logout_uri = $9
                 WHERE name = $1 AND cluster = $7",
            )
            .bind(&spec.name)
            .bind(&spec.display_name)
            .bind(&spec.url)
            .bind(&spec.phase)
            .bind(now)
            .bind(&spec.uid)
            .bind(&spec.cluster)
            .bind(&spec.redirect_uri)
            .bind(&spec.backchannel_logout_uri)
            .execute(&mut *tx)
            .await
            .ctx(OP)?;
            sqlx::query("DELETE FROM memberships WHERE tenant = $1")
                .bind(&spec.name)
                .execute(&mut *tx)
                .await
                .ctx(OP)?;
            Registered::Updated
        };
        for member in &spec.members {
            sqlx::query(
                "INSERT INTO memberships (tenant, email, role) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, email) DO UPDATE SET role = excluded.role",
            )
            .bind(&spec.name)
            .bind(&member.email)
            .bind(member.role.as_str())
            .execute(&mut *tx)
            .await
            .ctx(OP)?;
        }
        tx.commit().await.ctx(OP)?;
        Ok(Ok(outcome))
    }

    /// Deletes `cluster`'s tenant `name` and its memberships; `Ok(false)`
    /// when it did not exist; a record another cluster owns is left alone.
    pub async fn delete_tenant(
        &self,
        name: &str,
        cluster: &str,
    ) -> Result<Result<bool, OwnedElsewhere>, StoreError> {
        const OP: &str = "delete tenant";
        // One statement (memberships go by ON DELETE CASCADE): on SQLite a
        // read-then-write transaction could not take the write lock while
        // another connection writes.
        let deleted = sqlx::query("DELETE FROM tenants WHERE name = $1 AND cluster = $2")
            .bind(name)
            .bind(cluster)
            .execute(&self.pool)
            .await
            .ctx(OP)?
            .rows_affected();
        if deleted == 1 {
            return Ok(Ok(true));
        }
        let owner = sqlx::query("SELECT cluster FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .ctx(OP)?;
        match owner {
            Some(row) => Ok(Err(OwnedElsewhere {
                owner: row.try_get("cluster").ctx(OP)?,
            })),
            None => Ok(Ok(false)),
        }
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.name, t.id, t.display_name, t.url, t.phase, t.cluster, t.uid, t.created_at, t.updated_at,
                    t.redirect_uri, t.backchannel_logout_uri,
                    (SELECT COUNT(*) FROM memberships m WHERE m.tenant = t.name) AS members
             FROM tenants t ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list tenants")?;
        rows.iter()
            .map(tenant_of)
            .collect::<Result<_, _>>()
            .ctx("list tenants")
    }

    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.name, t.id, t.display_name, t.url, t.phase, t.cluster, t.uid, t.created_at, t.updated_at,
                    t.redirect_uri, t.backchannel_logout_uri,
                    (SELECT COUNT(*) FROM memberships m WHERE m.tenant = t.name) AS members
             FROM tenants t WHERE t.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx("get tenant")?;
        row.as_ref().map(tenant_of).transpose().ctx("get tenant")
    }

    pub async fn tenants_of(&self, email: &str) -> Result<Vec<MyTenant>, StoreError> {
        const OP: &str = "list my tenants";
        let rows = sqlx::query(
            "SELECT t.name, t.display_name, t.url, t.phase, m.role
             FROM memberships m JOIN tenants t ON t.name = m.tenant
             WHERE m.email = $1 ORDER BY t.name",
        )
        .bind(email)
        .fetch_all(&self.pool)
        .await
        .ctx(OP)?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role").ctx(OP)?;
                Ok(MyTenant {
                    name: row.try_get("name").ctx(OP)?,
                    display_name: row.try_get("display_name").ctx(OP)?,
                    url: row.try_get("url").ctx(OP)?,
                    phase: row.try_get("phase").ctx(OP)?,
                    role: role_of(OP, &role)?,
                })
            })
            .collect()
    }
}
