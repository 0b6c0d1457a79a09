//! `auth: login`: a token from `POST /v1/users/login`, kept between polls, replaced before it
//! expires or at once when the gateway answers 401; a refused login is not tried again before the
//! next poll.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::Value;

use super::support::{api_errors, ApiError};
use super::{header_value, DEFAULT_TOKEN_LIFETIME, REFRESH_MARGIN};
use crate::clock::unix_seconds;
use crate::config::GatewayConfig;
use crate::error::PollError;
use crate::http::fetch;
use crate::secret::Secret;

pub(super) struct Login {
    gateway: String,
    url: String,
    username: String,
    password: Secret,
    /// After a failed login, no new attempt for this long: about one poll interval.
    retry_gap: Duration,
    /// Held across a login, so that a poll and a `/probe` at the same moment log in once.
    session: tokio::sync::Mutex<Session>,
    /// The current token's expiry (Unix seconds), for `write_kept`, which cannot wait.
    expiry: Mutex<Option<f64>>,
}

#[derive(Default)]
struct Session {
    token: Option<Token>,
    failed: Option<(Instant, PollError)>,
}

struct Token {
    /// `Bearer TOKEN`.
    header: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Login {
    pub(super) fn new(gw: &GatewayConfig, username: &str, password: &Secret) -> Self {
        // Polls start one interval apart, give or take the scheduler's lateness.
        let retry_gap = gw.interval - gw.interval / 10;
        Login {
            gateway: gw.name.clone(),
            url: format!("{}/v1/users/login", gw.url),
            username: username.to_string(),
            password: password.clone(),
            retry_gap,
            session: tokio::sync::Mutex::new(Session::default()),
            expiry: Mutex::new(None),
        }
    }

    pub(super) fn kept_expiry(&self) -> Option<f64> {
        *crate::sync::lock(&self.expiry)
    }

    fn set_expiry(&self, v: Option<f64>) {
        *crate::sync::lock(&self.expiry) = v;
    }

    /// The `Authorization` value to use, and whether it was issued by this call.
    pub(super) async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, bool), PollError> {
        let mut s = self.session.lock().await;
        let now = Instant::now();
        if let Some(t) = s.token.as_ref().filter(|t| now < t.refresh_at) {
            return Ok((t.header.clone(), false));
        }
        let still_valid = s
            .token
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(|t| t.header.clone());
        if let Some((at, e)) = &s.failed {
            if now.duration_since(*at) < self.retry_gap {
                return still_valid.map(|h| (h, false)).ok_or_else(|| e.clone());
            }
        }
        match self.login(client, timeout).await {
            Ok(t) => {
                let header = t.header.clone();
                s.token = Some(t);
                s.failed = None;
                Ok((header, true))
            }
            Err(e) => {
                s.failed = Some((now, e.clone()));
                if let Some(h) = still_valid {
                    tracing::warn!(gateway = %self.gateway, reason = %e.reason(), error = %e,
                        "cannot renew the login token; the current one is used until it expires");
                    return Ok((h, false));
                }
                s.token = None;
                self.set_expiry(None);
                Err(e)
            }
        }
    }

    /// Drops a token the gateway refused, unless another poll has replaced it already.
    pub(super) async fn forget(&self, header: &Secret) {
        let mut s = self.session.lock().await;
        if s.token.as_ref().is_some_and(|t| t.header == *header) {
            s.token = None;
            self.set_expiry(None);
        }
    }

    async fn login(&self, client: &reqwest::Client, timeout: Duration) -> Result<Token, PollError> {
        let req = client
            .post(&self.url)
            .timeout(timeout)
            .header(ACCEPT, "application/json")
            .basic_auth(&self.username, Some(self.password.expose()));
        let answer = fetch(req, timeout).await?;
        answer.check_status().map_err(|e| match e {
            PollError::Unauthorized(code, _) => PollError::Unauthorized(code, ", login refused"),
            e => e,
        })?;
        let issued = parse_login(&answer.body)?;
        let header = Secret::new(format!("Bearer {}", issued.token.expose()));
        header_value(&header)?;
        let now = SystemTime::now();
        let life = TokenLife::new(issued.expires_after, unix_seconds(now));
        self.set_expiry(Some(life.expiry));
        tracing::debug!(gateway = %self.gateway, expiry = life.expiry, "logged in to the WhatsApp Business API");
        let start = Instant::now();
        Ok(Token {
            header,
            refresh_at: start + life.refresh_after,
            expires_at: start + life.lifetime,
        })
    }
}

/// What `POST /v1/users/login` gave.
#[derive(Debug)]
pub struct Issued {
    pub token: Secret,
    /// Unix seconds, when the answer told.
    pub expires_after: Option<i64>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    #[serde(default)]
    users: Option<Vec<LoginUser>>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct LoginUser {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expires_after: Option<Value>,
}

/// Parses a login answer: `{"users":[{"token":"...","expires_after":"2018-03-01 15:29:26+00:00"}]}`.
pub fn parse_login(body: &[u8]) -> Result<Issued, PollError> {
    let a: Option<LoginAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the login answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let user = a.users.unwrap_or_default().into_iter().next();
    let Some(LoginUser {
        token: Some(token),
        expires_after,
    }) = user.filter(|u| u.token.as_deref().is_some_and(|t| !t.is_empty()))
    else {
        return Err(PollError::InvalidResponse(
            "the login answer has no token".into(),
        ));
    };
    Ok(Issued {
        token: Secret::new(token),
        expires_after: expires_after
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_utc),
    })
}

/// When a token expires and when to replace it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLife {
    /// Unix seconds, as the gateway told it (or assumed).
    pub expiry: f64,
    pub lifetime: Duration,
    pub refresh_after: Duration,
}

impl TokenLife {
    pub fn new(expires_after: Option<i64>, now: f64) -> Self {
        let told = expires_after.map(|e| e as f64);
        let left = told.map(|e| e - now).filter(|s| s.is_finite() && *s > 0.0);
        // An expiry already past says more about the clocks than about the token: plan on the
        // default life then, and let a 401 tell when it really ends.
        let lifetime = left.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs_f64);
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        TokenLife {
            expiry: told.unwrap_or(now + DEFAULT_TOKEN_LIFETIME.as_secs_f64()),
            lifetime,
            refresh_after: lifetime - margin,
        }
    }
}

/// A civil date and time as the API writes them, in Unix seconds: `2018-09-27T14:26:07` (no
/// zone: UTC), `2018-03-01 15:29:26+00:00`; also `Z`, `+hhmm`, `+hh`, fractions of a second, and
/// a date or a time without seconds.
pub fn parse_utc(s: &str) -> Option<i64> {
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;
    const FORMAT: &[BorrowedFormatItem<'_>] = format_description!(
        version = 2,
        "[year]-[month]-[day][optional [[first [T][t][ ]][hour]:[minute][optional [:[second][optional [[first [.][,]][subsecond]]]]]]][optional [[first [Z][z][[offset_hour sign:mandatory][optional [:]][optional [[offset_minute]]]]]]]"
    );
    let mut parsed = time::parsing::Parsed::new();
    let rest = parsed.parse_items(s.trim().as_bytes(), FORMAT).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let date = time::Date::from_calendar_date(parsed.year()?, parsed.month()?, parsed.day()?.get())
        .ok()?;
    let clock = time::Time::from_hms(
        parsed.hour_24().unwrap_or(0),
        parsed.minute().unwrap_or(0),
        parsed.second().unwrap_or(0),
    )
    .ok()?;
    let offset = time::UtcOffset::from_hms(
        parsed.offset_hour().unwrap_or(0),
        parsed.offset_minute_signed().unwrap_or(0),
        0,
    )
    .ok()?;
    Some(date.with_time(clock).assume_offset(offset).unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_answer() {
        let i = parse_login(br#"{"users":[{"token":"eyJhbGciOi.tok","expires_after":"2018-03-01 15:29:26+00:00"}],"meta":{}}"#).unwrap();
        assert_eq!(i.token.expose(), "eyJhbGciOi.tok");
        assert_eq!(i.expires_after, Some(1_519_918_166));
        let i = parse_login(br#"{"users":[{"token":"t"}]}"#).unwrap();
        assert_eq!(i.expires_after, None);
        for body in [
            &br#"{"users":[]}"#[..],
            br#"{"users":[{"token":""}]}"#,
            br#"{"errors":[{"code":1005,"title":"Access denied"}]}"#,
            b"null",
            b"<html>",
        ] {
            assert_eq!(parse_login(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn token_life_and_refresh() {
        let now = 1_700_000_000.0;
        let week = TokenLife::new(None, now);
        assert_eq!(week.expiry, now + 7.0 * 86_400.0);
        assert_eq!(week.lifetime, DEFAULT_TOKEN_LIFETIME);
        assert_eq!(
            week.refresh_after,
            DEFAULT_TOKEN_LIFETIME - Duration::from_secs(3_600)
        );
        let short = TokenLife::new(Some(1_700_000_600), now);
        assert_eq!(short.expiry, 1_700_000_600.0);
        assert_eq!(short.refresh_after, Duration::from_secs(540));
        let skewed = TokenLife::new(Some(1_600_000_000), now);
        assert_eq!(skewed.expiry, 1_600_000_000.0);
        assert_eq!(skewed.lifetime, DEFAULT_TOKEN_LIFETIME);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(parse_utc("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_utc("2018-09-27T14:26:07"), Some(1_538_058_367));
        assert_eq!(parse_utc("2018-03-01 15:29:26+00:00"), Some(1_519_918_166));
        assert_eq!(parse_utc("2018-03-01 17:29:26+02:00"), Some(1_519_918_166));
        assert_eq!(parse_utc("2018-03-01T12:29:26-0300"), Some(1_519_918_166));
        assert_eq!(
            parse_utc("2018-03-01T15:29:26.123456Z"),
            Some(1_519_918_166)
        );
        assert_eq!(parse_utc(" 2018-03-01 15:29 "), Some(1_519_918_140));
        assert_eq!(parse_utc("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_utc("2000-03-01T00:00:00"), Some(951_868_800));
        assert_eq!(parse_utc("1969-12-31T23:59:59"), Some(-1));
        assert_eq!(parse_utc("2100-02-28T00:00:00"), Some(4_107_456_000));
        for bad in [
            "",
            "2018",
            "2018-13-01",
            "2023-02-29",
            "2018-09-31",
            "2018-09-27T24:00:00",
            "2018-09-27T14:26:07+",
            "2018-09-27T14:26:07 UTC",
            "2018-09-27T14:26:07.",
            "2018-٠٩-27",
            "soon",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad:?}");
        }
    }
}
