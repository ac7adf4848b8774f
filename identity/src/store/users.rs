//! Users: accounts, password hashes, enabling and disabling.

use sqlx::Row;

use super::{QueryContext, RowsAffected, StoreError, is_unique_violation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

/// A user with the stored password hash, for login only.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub(super) fn user_of<R>(row: &R) -> Result<User, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

queries! {
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await
            .ctx("count users")?;
        row.try_get("n").ctx("count users")
    }

    /// Creates a user; `None` when the email is taken.
    pub async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
    ) -> Result<Option<User>, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, display_name, password_hash, is_admin, disabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(password_hash)
        .bind(i64::from(user.is_admin))
        .bind(i64::from(user.disabled))
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(Some(user.clone())),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e).ctx("create user"),
        }
    }

    pub async fn user_credentials(
        &self,
        email: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at, password_hash
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .ctx("find user")?;
        row.map(|row| {
            Ok(UserCredentials {
                user: user_of(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
        .ctx("find user")
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("get user")?;
        row.as_ref().map(user_of).transpose().ctx("get user")
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at FROM users ORDER BY email",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list users")?;
        rows.iter()
            .map(user_of)
            .collect::<Result<_, _>>()
            .ctx("list users")
    }

    /// Returns whether the user exists.
    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("set password")?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables or enables a user; disabling ends every session and token.
    /// Returns whether the user exists.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("disable user")?;
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("disable user")?;
        if disabled {
            sqlx::query("DELETE FROM credentials WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("disable user")?;
        }
        tx.commit().await.ctx("disable user")?;
        Ok(done.rows_affected() == 1)
    }
}
