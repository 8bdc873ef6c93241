//! What the simulated customers ask, drawn from the seed: opens, deposits, withdrawals, closes
//! and transfers on few accounts (so some are hot), by their owners or by strangers, to accounts
//! that exist or do not, some with a wrong step-up password.

use onlinebank_core::event::{AuthCertified, WriteKind};
use onlinebank_core::ids::{AccountNo, CustomerId, RequestId};
use onlinebank_core::money::Won;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One customer request, with what the seed decided about its path.
#[derive(Debug, Clone)]
pub struct Op {
    /// When the client sends it, in simulated milliseconds.
    pub at_ms: u64,
    pub request: AuthCertified,
    /// The step-up password is wrong: auth refuses it.
    pub wrong_password: bool,
    /// How long auth takes to answer the step-up.
    pub step_up_ms: u64,
    /// How long the certify write waits for the database after the step-up.
    pub write_delay_ms: u64,
}

/// The seed's knobs for the workload.
pub struct Shape {
    pub ops: usize,
    pub span_ms: u64,
    pub wrong_password: f64,
    pub slow_step_up: f64,
    pub slow_write: f64,
}

/// The customers and what they ask.
pub struct Workload {
    pub customers: Vec<CustomerId>,
    pub ops: Vec<Op>,
}

/// `shape.ops` requests over `shape.span_ms`, sorted by time; some come in bursts (a few
/// milliseconds apart), so step-ups of one customer overlap.
pub fn draw(rng: &mut ChaCha8Rng, shape: &Shape) -> anyhow::Result<Workload> {
    let customers: Vec<CustomerId> = (0..rng.random_range(1..=3))
        .map(|n| CustomerId::parse(&format!("customer-{n}")))
        .collect::<Result<_, _>>()?;
    let accounts: Vec<(AccountNo, CustomerId)> = (0..rng.random_range(1..=4))
        .map(|_| {
            let owner = customers[rng.random_range(0..customers.len())].clone();
            (AccountNo::generate(), owner)
        })
        .collect();
    let mut ops = Vec::with_capacity(shape.ops);
    // Every account is opened first (some twice: the second is refused).
    for (account_no, owner) in &accounts {
        let amount = rng.random_range(0..=10_000);
        let mut open = op(
            rng,
            shape,
            0,
            owner,
            WriteKind::Open,
            account_no,
            amount,
            None,
        )?;
        // The accounts exist, for the rest of the workload to have something to work on.
        (open.wrong_password, open.step_up_ms) = (false, 1);
        ops.push(open);
    }
    while ops.len() < shape.ops {
        let at = match ops.last() {
            Some(last) if rng.random_bool(0.3) => last.at_ms + rng.random_range(0..=20),
            _ => rng.random_range(1..=shape.span_ms),
        };
        let (account_no, owner) = pick(rng, &accounts);
        let customer = if rng.random_bool(0.1) {
            customers[rng.random_range(0..customers.len())].clone()
        } else {
            owner
        };
        let kind = match rng.random_range(0..100) {
            0..=39 => WriteKind::Deposit,
            40..=69 => WriteKind::Withdraw,
            70..=91 => WriteKind::Transfer,
            92..=96 => WriteKind::Close,
            _ => WriteKind::Open,
        };
        let amount = match kind {
            WriteKind::Close => 0,
            _ => rng.random_range(1..=20_000),
        };
        let to = (kind == WriteKind::Transfer).then(|| {
            if rng.random_bool(0.1) {
                AccountNo::generate()
            } else {
                pick(rng, &accounts).0
            }
        });
        if to.as_ref() == Some(&account_no) {
            // The request role refuses a transfer to itself before it is recorded.
            continue;
        }
        ops.push(op(
            rng,
            shape,
            at,
            &customer,
            kind,
            &account_no,
            amount,
            to,
        )?);
    }
    ops.sort_by_key(|op| op.at_ms);
    Ok(Workload { customers, ops })
}

fn pick(rng: &mut ChaCha8Rng, accounts: &[(AccountNo, CustomerId)]) -> (AccountNo, CustomerId) {
    // The first account is hot: half the requests.
    let index = if rng.random_bool(0.5) {
        0
    } else {
        rng.random_range(0..accounts.len())
    };
    accounts[index].clone()
}

/// How long a sending's step-up takes at auth, and its certify write waits for the database:
/// drawn again for every sending (a slow moment, not a slow request).
pub fn latencies(rng: &mut ChaCha8Rng, shape: &Shape) -> (u64, u64) {
    let step_up_ms = if rng.random_bool(shape.slow_step_up) {
        rng.random_range(300..=1_500)
    } else {
        rng.random_range(1..=50)
    };
    let write_delay_ms = if rng.random_bool(shape.slow_write) {
        rng.random_range(1_000..=12_000)
    } else {
        rng.random_range(0..=20)
    };
    (step_up_ms, write_delay_ms)
}

#[allow(clippy::too_many_arguments)]
fn op(
    rng: &mut ChaCha8Rng,
    shape: &Shape,
    at_ms: u64,
    customer: &CustomerId,
    kind: WriteKind,
    account_no: &AccountNo,
    amount: i64,
    to_account_no: Option<AccountNo>,
) -> anyhow::Result<Op> {
    let (step_up_ms, write_delay_ms) = latencies(rng, shape);
    Ok(Op {
        at_ms,
        request: AuthCertified {
            request_id: RequestId::generate(),
            customer_id: customer.clone(),
            kind,
            account_no: account_no.clone(),
            amount: Won::try_from(amount)?,
            to_account_no,
        },
        wrong_password: rng.random_bool(shape.wrong_password),
        step_up_ms,
        write_delay_ms,
    })
}
