//! The kernel's view of the host, over rtnetlink: a one-shot dump, and a live watch.
//!
//! This is the only module that sees netlink types; it converts them into `snapshot` types once.
//! The watch subscribes to the link, address and route multicast groups *before* dumping, so no
//! change falls between the dump and the first event; when the kernel reports an overrun (events
//! were lost) it dumps again.

use crate::core::snapshot::{
    AddrFlags, Address, DefaultRoute, Family, HostEvent, HostSnapshot, Link, OperState, Scope,
};
use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events arriving this close together are applied as one change (an address move is a DEL + NEW).
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(5);
/// Large enough for a burst of thousands of address events without an overrun.
const RECEIVE_BUFFER_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("netlink request failed: {0}")]
    Request(#[from] rtnetlink::Error),
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// Reads links, addresses and default routes once.
pub(crate) async fn dump_once() -> Result<HostSnapshot, NetlinkError> {
    let (mut connection, handle, _) = rtnetlink::new_connection()?;
    // Strict checking lets the kernel filter the route dump by table instead of sending every
    // local route of every address.
    connection
        .socket_mut()
        .socket_mut()
        .set_netlink_get_strict_chk(true)?;
    let task = tokio::spawn(connection);
    let snapshot = dump(&handle).await;
    task.abort();
    snapshot
}

/// The host's usable addresses now, read over netlink from any thread, inside an async runtime or
/// not (a thread of its own with its own runtime): for the fixes of configuration errors, which
/// are found before the daemon watches the host. `None` when the interfaces cannot be read.
pub(crate) fn usable_addrs_now() -> Option<Vec<IpAddr>> {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let snapshot = runtime.block_on(dump_once()).ok()?;
        Some(
            crate::core::decide::usable_addrs(&snapshot)
                .map(|a| a.ip)
                .collect(),
        )
    })
    .join()
    .ok()
    .flatten()
}

async fn dump(handle: &Handle) -> Result<HostSnapshot, NetlinkError> {
    let mut snapshot = HostSnapshot::default();
    let mut links = handle.link().get().execute();
    while let Some(msg) = links.try_next().await? {
        let link = link_from(&msg);
        snapshot.links.insert(link.index, link);
    }
    let mut addresses = handle.address().get().execute();
    while let Some(msg) = addresses.try_next().await? {
        if let Some(addr) = address_from(&msg) {
            snapshot.addresses.insert(addr.key(), addr);
        }
    }
    for request in [
        main_table_request(RouteMessageBuilder::<Ipv4Addr>::new()),
        main_table_request(RouteMessageBuilder::<Ipv6Addr>::new()),
    ] {
        let mut routes = handle.route().get(request).execute();
        while let Some(msg) = routes.try_next().await? {
            if let Some(route) = default_route_from(&msg) {
                snapshot
                    .default_routes
                    .insert((route.family, route.link_index, route.metric), route);
            }
        }
    }
    snapshot.ipv6_disabled = ipv6_disabled();
    Ok(snapshot)
}

/// Read with every snapshot: the sysctl has no netlink event, but turning IPv6 off or on removes
/// or adds addresses, which are events.
pub(crate) fn ipv6_disabled() -> bool {
    match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        Ok(text) => text.trim() == "1",
        // No such file: the kernel was booted with ipv6.disable=1 (or has no IPv6 at all).
        Err(_) => true,
    }
}

fn main_table_request<T>(builder: RouteMessageBuilder<T>) -> RouteMessage {
    builder
        .table_id(RouteHeader::RT_TABLE_MAIN.into())
        .protocol(RouteProtocol::Unspec)
        .scope(RouteScope::Universe)
        .kind(RouteType::Unspec)
        .build()
}

/// A live view of the host: the latest snapshot, republished after every debounced change.
pub(crate) struct HostWatch {
    pub(crate) snapshots: watch::Receiver<Arc<HostSnapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostWatch {
    /// Subscribes, dumps, and follows changes until dropped. `on_overrun` is called each time the
    /// kernel reports lost events (before the re-dump).
    pub(crate) async fn start(
        on_overrun: impl Fn() + Send + 'static,
    ) -> Result<HostWatch, NetlinkError> {
        let (mut connection, handle, events) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])?;
        let socket = connection.socket_mut().socket_mut();
        socket.set_netlink_get_strict_chk(true)?;
        raise_receive_buffer(socket);
        let connection_task = tokio::spawn(connection);
        let snapshot = dump(&handle).await?;
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let task = tokio::spawn(async move {
            follow(handle, events, tx, on_overrun).await;
            connection_task.abort();
        });
        Ok(HostWatch {
            snapshots: rx,
            task,
        })
    }
}

/// Root may exceed `net.core.rmem_max` (SO_RCVBUFFORCE); others get what the sysctl allows.
/// `STACKRING_NETLINK_RCVBUF` (bytes) overrides the size: tests use a tiny one to force overruns.
fn raise_receive_buffer(socket: &mut rtnetlink::sys::Socket) {
    use std::os::fd::AsRawFd;
    let bytes = std::env::var("STACKRING_NETLINK_RCVBUF")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(RECEIVE_BUFFER_BYTES);
    let size = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = socket.set_rx_buf_sz(bytes);
    }
}

async fn follow(
    handle: Handle,
    mut events: Events,
    tx: watch::Sender<Arc<HostSnapshot>>,
    on_overrun: impl Fn(),
) {
    let mut snapshot = (**tx.borrow()).clone();
    loop {
        let Some(first) = events.next().await else {
            return;
        };
        let mut changed = false;
        let mut overrun = handle_message(&mut snapshot, first.0, &mut changed);
        // Gather whatever else arrives within the debounce window, then publish once.
        let deadline = tokio::time::Instant::now() + DEBOUNCE;
        loop {
            tokio::select! {
                next = events.next() => match next {
                    Some((msg, _)) => overrun |= handle_message(&mut snapshot, msg, &mut changed),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if overrun {
            on_overrun();
            log::warn!("netlink events were lost (overrun): reading the whole host state again");
            match dump(&handle).await {
                Ok(fresh) => {
                    changed = fresh != snapshot;
                    snapshot = fresh;
                }
                Err(e) => log::error!("re-reading host state after an overrun failed: {e}"),
            }
        }
        let disabled = ipv6_disabled();
        changed |= disabled != snapshot.ipv6_disabled;
        snapshot.ipv6_disabled = disabled;
        if changed {
            tx.send_replace(Arc::new(snapshot.clone()));
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Applies one message; returns whether it was an overrun.
fn handle_message(
    snapshot: &mut HostSnapshot,
    msg: NetlinkMessage<RouteNetlinkMessage>,
    changed: &mut bool,
) -> bool {
    match msg.payload {
        NetlinkPayload::Overrun(_) => true,
        NetlinkPayload::InnerMessage(inner) => {
            if let Some(event) = event_from(inner) {
                *changed |= snapshot.apply(event);
            }
            false
        }
        _ => false,
    }
}

/// Converts a multicast message into our event, if it is one we follow.
pub(crate) fn event_from(msg: RouteNetlinkMessage) -> Option<HostEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => Some(HostEvent::LinkChanged(link_from(&m))),
        RouteNetlinkMessage::DelLink(m) => Some(HostEvent::LinkRemoved(m.header.index)),
        RouteNetlinkMessage::NewAddress(m) => address_from(&m).map(HostEvent::AddressChanged),
        RouteNetlinkMessage::DelAddress(m) => {
            address_from(&m).map(|a| HostEvent::AddressRemoved(a.key()))
        }
        RouteNetlinkMessage::NewRoute(m) => {
            default_route_from(&m).map(HostEvent::DefaultRouteAdded)
        }
        RouteNetlinkMessage::DelRoute(m) => {
            default_route_from(&m).map(HostEvent::DefaultRouteRemoved)
        }
        _ => None,
    }
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut kind = None;
    let mut oper = OperState::Unknown;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::OperState(s) => oper = oper_state(*s),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let flags = msg.header.flags;
    Link {
        index: msg.header.index,
        name,
        kind,
        admin_up: flags.contains(LinkFlags::Up),
        oper,
        loopback: flags.contains(LinkFlags::Loopback),
    }
}

fn oper_state(state: State) -> OperState {
    match state {
        State::Up => OperState::Up,
        State::Down => OperState::Down,
        State::LowerLayerDown => OperState::LowerLayerDown,
        State::Testing => OperState::Testing,
        State::Dormant => OperState::Dormant,
        State::NotPresent => OperState::NotPresent,
        _ => OperState::Unknown,
    }
}

fn address_from(msg: &AddressMessage) -> Option<Address> {
    let mut address = None;
    let mut local = None;
    // The 8-bit header flags lack mngtmpaddr, noprefixroute, stable-privacy: prefer IFA_FLAGS.
    let mut flags = msg.header.flags.bits() as u32;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    // IPv4: IFA_LOCAL is the interface's own address, IFA_ADDRESS the peer on point-to-point links.
    let ip = match address {
        Some(IpAddr::V4(_)) => local.or(address),
        _ => address.or(local),
    }?;
    Some(Address {
        link_index: msg.header.index,
        ip,
        prefix_len: msg.header.prefix_len,
        scope: Scope::from_raw(msg.header.scope.into()),
        flags: AddrFlags(flags),
    })
}

/// A default route of the main table, with its output link; other routes are not followed.
fn default_route_from(msg: &RouteMessage) -> Option<DefaultRoute> {
    let header = &msg.header;
    if header.destination_prefix_length != 0 || header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = header.table as u32;
    let mut oif = None;
    let mut gateway = None;
    let mut metric = 0;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::MultiPath(hops) => {
                oif = oif.or(hops.first().map(|h| h.interface_index));
            }
            _ => {}
        }
    }
    if table != RouteHeader::RT_TABLE_MAIN as u32 {
        return None;
    }
    let family = match header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet => Family::Ipv4,
        rtnetlink::packet_route::AddressFamily::Inet6 => Family::Ipv6,
        _ => return None,
    };
    Some(DefaultRoute {
        family,
        link_index: oif?,
        gateway,
        metric,
    })
}
