//! Signing up, logging in (with the TOTP step), logging out, and the forgotten password.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postern_domain::auth::{self, SessionOrigin};
use serde::Deserialize;

use super::{CsrfForm, FormToken, Nav, WebError, WebUser, https, local_path, render};
use crate::AppState;
use crate::limit::ClientIp;
use crate::simplelogin::auth::{
    LoginStep, check_login, check_login_code, complete_reset, limit_login, limit_login_code,
    limit_reset, limit_reset_request, limit_signup, registration_open, send_reset_link,
    session_cookie, sign_up,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/login/code", post(login_code))
        .route("/logout", post(logout))
        .route("/signup", get(signup_page).post(signup))
        .route("/forgot", get(forgot_page).post(forgot))
        .route("/auth/reset_password", get(reset_page).post(reset))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    email: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    mfa_key: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub(super) struct MessagePage<'a> {
    pub nav: Option<Nav>,
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    user: Option<WebUser>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    if user.is_some() {
        return super::back_to(&next);
    }
    let token = FormToken::of(&headers, https(&state));
    let page = render(&LoginPage {
        nav: None,
        csrf: &token.value,
        email: "",
        next: &next,
        error: None,
    });
    token.respond(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    email: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    FormToken::check(&headers, &form.csrf)?;
    let next = local_path(form.next.as_deref());
    let checked = async {
        limit_login(&state, &ip)?;
        check_login(&state, &ip, &form.email, &form.password).await
    };
    match checked.await {
        Ok(LoginStep::Done(user)) => logged_in(&state, user.id, &next).await,
        Ok(LoginStep::NeedsCode(user)) => {
            let key = auth::mfa_key(&state.mfa_key, user.id, chrono::Utc::now().timestamp());
            Ok(render(&CodePage {
                nav: None,
                csrf: &form.csrf,
                mfa_key: &key,
                next: &next,
                error: None,
            }))
        }
        Err(e) => {
            let page = render(&LoginPage {
                nav: None,
                csrf: &form.csrf,
                email: &form.email,
                next: &next,
                error: Some(&e.message),
            });
            Ok((e.status, page).into_response())
        }
    }
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    mfa_key: String,
    code: String,
    next: Option<String>,
}

async fn login_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    FormToken::check(&headers, &form.csrf)?;
    let next = local_path(form.next.as_deref());
    let checked = async {
        limit_login_code(&state, &ip)?;
        check_login_code(&state, &form.mfa_key, form.code.trim()).await
    };
    match checked.await {
        Ok(user) => logged_in(&state, user.id, &next).await,
        Err(e) => {
            let page = render(&CodePage {
                nav: None,
                csrf: &form.csrf,
                mfa_key: &form.mfa_key,
                next: &next,
                error: Some(&e.message),
            });
            Ok((e.status, page).into_response())
        }
    }
}

/// A new session cookie, then on to `next`.
async fn logged_in(state: &AppState, user_id: i64, next: &str) -> Result<Response, WebError> {
    let cookie = session_cookie(state, user_id, SessionOrigin::Login).await?;
    let mut response = super::back_to(next);
    response.headers_mut().extend(cookie);
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    if let Some(id) = user.caller.session_id() {
        auth::end_session(state.ctx.db(), id).await?;
    }
    let mut response = super::back_to("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, crate::extract::cleared_session_cookie());
    Ok(response)
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    email: &'a str,
    open: bool,
    error: Option<&'a str>,
}

async fn signup_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = FormToken::of(&headers, https(&state));
    let page = render(&SignupPage {
        nav: None,
        csrf: &token.value,
        email: "",
        open: state.ctx.settings().accounts.registration,
        error: None,
    });
    token.respond(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct SignupForm {
    csrf: String,
    email: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<SignupForm>,
) -> Result<Response, WebError> {
    FormToken::check(&headers, &form.csrf)?;
    let signed_up = async {
        limit_signup(&state, &ip)?;
        registration_open(&state)?;
        sign_up(&state, form.email.trim(), &form.password).await
    };
    match signed_up.await {
        Ok(()) => Ok(render(&MessagePage {
            nav: None,
            title: "Check your email",
            message: "If this address can be used, a confirmation link is on its way to it. \
                      Open it to finish signing up, then log in.",
            link: Some(("/login", "Log in")),
        })),
        Err(e) => {
            let page = render(&SignupPage {
                nav: None,
                csrf: &form.csrf,
                email: &form.email,
                open: state.ctx.settings().accounts.registration,
                error: Some(&e.message),
            });
            Ok((e.status, page).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
}

async fn forgot_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = FormToken::of(&headers, https(&state));
    let page = render(&ForgotPage {
        nav: None,
        csrf: &token.value,
    });
    token.respond(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct ForgotForm {
    csrf: String,
    email: String,
}

async fn forgot(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ForgotForm>,
) -> Result<Response, WebError> {
    FormToken::check(&headers, &form.csrf)?;
    limit_reset_request(&state, &ip)?;
    send_reset_link(&state, &ip, form.email.trim()).await?;
    Ok(render(&MessagePage {
        nav: None,
        title: "Check your email",
        message: "If an account uses this address, a link to choose a new password is on its \
                  way. It works for one hour.",
        link: Some(("/login", "Back to login")),
    }))
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The page of the emailed reset link: it changes nothing until the form is sent.
async fn reset_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let form = FormToken::of(&headers, https(&state));
    let page = render(&ResetPage {
        nav: None,
        csrf: &form.value,
        token: q.token.as_deref().unwrap_or_default(),
        error: None,
    });
    form.respond(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct ResetForm {
    csrf: String,
    token: String,
    password: String,
}

async fn reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> Result<Response, WebError> {
    FormToken::check(&headers, &form.csrf)?;
    let reset = async {
        limit_reset(&state, &ip)?;
        complete_reset(&state, form.token.trim(), &form.password).await
    };
    match reset.await {
        Ok(()) => Ok(render(&MessagePage {
            nav: None,
            title: "Password changed",
            message: "Your new password is set. Every other session was logged out and every \
                      API key revoked.",
            link: Some(("/login", "Log in")),
        })),
        Err(e) => {
            let page = render(&ResetPage {
                nav: None,
                csrf: &form.csrf,
                token: &form.token,
                error: Some(&e.message),
            });
            Ok((e.status, page).into_response())
        }
    }
}
