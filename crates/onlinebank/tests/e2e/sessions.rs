//! Logout ends a session: `DELETE /api/v1/sessions/current` answers 204, the session's token is
//! refused for writes at once and for reads within a second (the gateway learns revocations from
//! auth), and the customer's other sessions keep working. In `up` and with one process per role.

use crate::support::*;
use std::time::Duration;

async fn logout(api: &Api, token: &str) -> u16 {
    api.req(reqwest::Method::DELETE, "/api/v1/sessions/current")
        .bearer(token)
        .send()
        .await
        .status
}

async fn logout_ends_one_session_and_leaves_the_others(api: &Api) {
    let alice = api.customer("alice@test").await;
    api.open_ok(&alice, "1001", 100).await;
    api.wait_balance(&alice.token, "1001", 100).await;
    let other = api.token(&alice.user, &alice.pw).await;

    assert_eq!(logout(api, &alice.token).await, 204);
    // Writes: at once.
    let reply = api.deposit(&alice.token, &alice.pw, "1001", 1).await;
    assert_eq!(
        reply.0, 401,
        "a deposit with a logged-out token: {}",
        reply.1
    );
    // Reads: within a second or two.
    eventually(
        "reads with the logged-out token to be refused",
        Duration::from_secs(3),
        || async {
            let reply = api.account(&alice.token, "1001").await;
            match reply.0 {
                401 => Ok(()),
                _ => Err(format!("{} {}", reply.0, reply.1)),
            }
        },
    )
    .await;
    expect_error(&api.accounts(&alice.token).await, 401, "unauthorized");
    // The other session is untouched.
    let reply = api.deposit(&other, &alice.pw, "1001", 5).await;
    assert_eq!(expect_ok(&reply, 200)["balance"], 105, "{}", reply.1);
    assert_eq!(api.account(&other, "1001").await.0, 200);
    // Logging out twice, or without a token.
    assert_eq!(logout(api, &other).await, 204);
    assert_eq!(
        api.req(reqwest::Method::DELETE, "/api/v1/sessions/current")
            .send()
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn logout_revokes_the_session_for_writes_at_once_and_for_reads_within_a_second() {
    let bank = TestBank::start().await;
    logout_ends_one_session_and_leaves_the_others(&bank.api).await;
}

#[tokio::test]
async fn logout_revokes_the_session_with_one_process_per_role() {
    let cluster = Cluster::start().await;
    logout_ends_one_session_and_leaves_the_others(&cluster.api).await;
}
