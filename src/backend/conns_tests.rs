//! Tests of `conns`.
use super::*;
use tokio::io::AsyncWriteExt;

const FOREVER: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_closed_idle_connection_is_not_checked_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Conns::new(Duration::from_secs(1));
    let (a, _) = conns.get(addr, None, false, 10, FOREVER).await.unwrap();
    let (mut server_a, _) = l.accept().await.unwrap();
    let (b, _) = conns.get(addr, None, false, 10, FOREVER).await.unwrap();
    let (server_b, _) = l.accept().await.unwrap();
    conns.release(a, addr);
    conns.release(b, addr);
    // b (the newest) is closed by the server; a sent stray bytes.
    drop(server_b);
    server_a.write_all(b"x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(conns.checkout(addr, false).is_none());
    assert_eq!((conns.idle(), conns.open()), (0, 0));
    // A live one is.
    let (c, pooled) = conns.get(addr, None, false, 10, FOREVER).await.unwrap();
    assert!(!pooled);
    let (_server_c, _) = l.accept().await.unwrap();
    conns.release(c, addr);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_c, pooled) = conns.get(addr, None, false, 10, FOREVER).await.unwrap();
    assert!(pooled);
    assert_eq!(conns.opened(), 3);
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_a_request_waits_for_a_freed_connection_or_times_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(Conns::new(Duration::from_secs(1)));
    let (first, _) = conns.get(addr, None, false, 1, FOREVER).await.unwrap();
    assert_eq!(conns.open(), 1);
    // Full: the second waits, counted, and times out.
    let c = conns.clone();
    let waiter = tokio::spawn(async move {
        c.get(addr, None, false, 1, Duration::from_millis(500))
            .await
            .map(|_| ())
    });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(conns.waiting(), 1);
    assert!(matches!(waiter.await.unwrap(), Err(GetError::Queue)));
    assert_eq!(conns.waiting(), 0);
    // A third waits and gets the first one when it is released.
    let c = conns.clone();
    let waiter = tokio::spawn(async move {
        c.get(addr, None, false, 1, Duration::from_secs(5))
            .await
            .map(|(_, pooled)| pooled)
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    conns.release(first, addr);
    assert!(waiter.await.unwrap().unwrap(), "the released connection");
    // A closed one frees its place too.
    assert_eq!(conns.open(), 0, "the waiter dropped its connection");
}
