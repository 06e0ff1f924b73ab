"""Synthetic NetFlow v2 traffic: the offline default data source of the ``netflow`` domain.

:func:`generate` writes time-ordered CSV files with exactly the columns of the public
NF-v2 datasets (NF-BoT-IoT-v2, NF-ToN-IoT-v2, NF-UNSW-NB15-v2, NF-CSE-CIC-IDS2018-v2):
the 43 nProbe fields in the order of their header, then ``Label`` (0/1) and ``Attack``
(class name, ``"Benign"`` for normal traffic). The real files' extra ``Dataset``
column is not written. Row order is time order (the public files have no start
time column either; FlowTransformer reads context from row order).

Traffic model
-------------
**Network.** Internal clients (Windows, Linux, macOS and IoT hosts) sit behind
the sensor; internal servers have roles (web, DNS resolver, mail, file/SMB, SSH,
FTP, database, monitoring, admin); external hosts are the internet. Each host
has a fixed OS, which fixes the TTL seen at the sensor (64 / 128 / 255 minus the
hop count, 0 hops for internal and 4-25 for external hosts), the TCP SYN window
(``TCP_WIN_MAX_IN`` / ``_OUT``, e.g. 64240, 65535, 8192, 29200, 5840), the
header size of its TCP packets (40 bytes, or 52 with the timestamp option on
Linux/macOS) and its ephemeral source-port range (32768-60999 or 49152-65535).
A flow is bidirectional: ``IN_*`` is client to server, ``OUT_*`` server to client.

**Service templates.** Every flow, benign or not, is rendered by one of these
templates from a vector of nine latent standard normals (request size, response
size, think time, packet count, close pattern, sub-variant/port, loss, misc,
transfer rate). Numeric sizes are log-normal in the latents (sigma up to 2, so
bytes, packets and durations are heavy-tailed); choices are quantiles of the
latents.

* HTTPS (TCP 443/8443, nDPI ``L7_PROTO`` 91.x: TLS, TLS.Google 91.126, TLS.Amazon
  91.178, ...), HTTP (TCP 80/8080, 7.0), HTTPS uploads (large ``IN_BYTES``), QUIC
  (UDP 443, 188.0), DNS (UDP 53, 5.x, one query and usually one answer, with
  ``DNS_QUERY_ID/TYPE/TTL_ANSWER``), NTP (UDP 123, 9.0), SSH (TCP 22, 92.0: short
  logins and automated sessions, interactive sessions, bulk scp), FTP control
  (TCP 21, 1.0, ``FTP_COMMAND_RET_CODE``), SMTP (25/587/465), IMAPS/POP3S, SMB
  (TCP 445, 41.0), ICMP echo (``ICMP_TYPE`` = 256 * type + code = 2048,
  ``ICMP_IPV4_TYPE`` 8), ICMP port unreachable (771 / 3), failed TCP
  connections (SYN only, TCP flags 2; SYN answered by RST, flags 2 | 20 = 22;
  half-open 2 | 18 and SYN-then-RST probes), short connect-and-close sessions
  (health checks and banner reads, flags 19 / 22 / 27), other TCP (RDP, databases,
  high ports) and other UDP (NetBIOS, SSDP, mDNS, syslog, SNMP, RTP).
* A TCP session has a three-way handshake and ACKs (about one per two data
  packets of the other direction) as header-only packets; data packets carry up
  to ``1500 - header`` bytes. Close patterns set ``CLIENT_TCP_FLAGS`` /
  ``SERVER_TCP_FLAGS`` (FIN close 27/27, client or server RST 31 or 30, still
  open at export 26/26, ...); ``TCP_FLAGS`` is their OR; PSH is dropped for a
  direction that sent no payload.
* Derived fields are exactly consistent: ``*_BYTES = payload + header * packets``;
  the five ``NUM_PKTS_*`` bins count the packets of both directions and sum to
  ``IN_PKTS + OUT_PKTS`` (each direction is header-only packets plus data
  packets: full-size ones and an equal-sized remainder for bulk TCP, otherwise
  equal-sized ones); ``LONGEST``/``SHORTEST_FLOW_PKT``
  and ``MIN``/``MAX_IP_PKT_LEN`` come from the same packets (``MIN_IP_PKT_LEN``
  is 0 when one direction is empty, as nProbe writes it); duration is think time
  plus bytes over a log-normal link rate; ``DURATION_IN``/``_OUT`` are 0 for a
  direction with one packet; ``*_AVG_THROUGHPUT`` = bits / duration (at least
  1 ms); ``*_SECOND_BYTES`` = bytes per started second; ``MIN``/``MAX_TTL`` span
  the client's and (if it answered) the server's TTL. About 8 % of flows are on a
  lossy path and retransmit 0.5-5 % of their data packets (``RETRANSMITTED_*``).
  The real NF-v2 files have 32-bit wrap-around values in
  ``FLOW_DURATION_MILLISECONDS`` and odd ``*_SECOND_BYTES`` / ``ICMP_TYPE``
  values on TCP flows; those artefacts are not reproduced.

**Benign traffic.** Flows arrive as a Poisson process whose rate sets the time
unit (one benign flow per unit). Most are independent draws from the template
mix above (HTTPS 25 %, DNS 18 %, HTTP 13 %, failed TCP 6 %, ...), between random
hosts of the right roles (inbound to internal servers or outbound to the
internet). Some benign traffic is bursty, as real traffic is: web page loads (2-10
HTTP(S) flows between the same pair), configuration-management runs (5-25 short
SSH sessions from the admin host), monitoring sweeps (pings or health-check
connections to many servers) and backups (chunks of large uploads).

**Attacks** arrive as campaigns: ``size`` flows (log-normal, median 30-100 by
family, 8-1500) from one attacker (one or two hosts, internal or external; DDoS:
20-200 external bots) against one target, starting at a uniform random time, at
a density ``d`` (the share of all flows during the campaign that belong to it;
benign traffic keeps flowing in between, and campaigns may overlap). Families
take 25 / 22 / 23 / 15 / 15 % of the attack flows (DoS, DDoS, Reconnaissance,
BruteForce, Theft). Within a campaign the latents are strongly correlated
(``z = rho * z_campaign + sqrt(1 - rho**2) * z_flow`` with rho about 0.9), so
attempts look alike, while every latent is still exactly N(0, 1) over campaigns,
the same as for benign flows.

* ``DoS`` (d 0.75-0.97): an HTTP or HTTPS request flood, a SYN flood on 80/443,
  or a mix; 60 % of the SYN floods come from a packet tool (window 512, 40-byte
  header, one packet per flow).
* ``DDoS`` (d 0.8-0.97, many sources): UDP floods (no answer), SYN floods, HTTP
  request floods, DNS query floods.
* ``Reconnaissance`` (d 0.6-0.95): SYN port scans over sequential or random
  ports (60 % with nmap's signature: window 1024, 44-byte SYN), ICMP ping sweeps
  over consecutive hosts, and banner scans of common service ports.
* ``BruteForce`` (d 0.5-0.9): SSH or FTP password guessing (each attempt is a
  short login session; FTP answers 530) or web-login guessing over HTTP(S).
* ``Theft`` (d 0.4-0.9): data exfiltration in chunks of large HTTPS uploads,
  keylogger beacons (small periodic HTTPS posts), DNS tunnelling (oversized
  queries) and raw transfers to an unusual port.

**Why the task is not trivial, and why context helps.** Most attack flows are
rendered by a *benign* template with latents of the benign distribution, so on
its own a flood request is a short HTTP request, a brute-force attempt is a short
SSH login, a scan probe is a failed connection, a beacon is a small HTTPS flow
and an exfiltration chunk is a large upload. Only some variants (UDP floods,
packet-tool SYNs, DNS tunnels, raw exfiltration) have single-flow tells. What
separates the rest is the neighbourhood: runs of near-identical flows to one
service at a high rate. IP addresses are drawn from the same pools for benign and
attack flows and FlowTransformer does not read them anyway; the signal is in the
37 model features plus row order. Labels are noise-free. Measured on 30k flows
with the last 20 % held out (``tests/data/test_synthetic_netflow.py``, seeds
0-9): a single-flow logistic regression reaches a balanced accuracy of about
0.61-0.79, the same model given the W = 8 flows ending at the target 0.90-0.96.

Usage::

    python -m tasks.domains.netflow.synthetic OUT_DIR --n-flows 60000 --seed 0 [--n-files 2]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks import store

if TYPE_CHECKING:
    import polars as pl  # lazy: the params schema imports this module for its field lists

# ----------------------------------------------------------------------------- schema
NF_V2_COLUMNS: list[str] = [
    "IPV4_SRC_ADDR", "L4_SRC_PORT", "IPV4_DST_ADDR", "L4_DST_PORT", "PROTOCOL", "L7_PROTO",
    "IN_BYTES", "IN_PKTS", "OUT_BYTES", "OUT_PKTS", "TCP_FLAGS", "CLIENT_TCP_FLAGS", "SERVER_TCP_FLAGS",
    "FLOW_DURATION_MILLISECONDS", "DURATION_IN", "DURATION_OUT", "MIN_TTL", "MAX_TTL",
    "LONGEST_FLOW_PKT", "SHORTEST_FLOW_PKT", "MIN_IP_PKT_LEN", "MAX_IP_PKT_LEN",
    "SRC_TO_DST_SECOND_BYTES", "DST_TO_SRC_SECOND_BYTES", "RETRANSMITTED_IN_BYTES", "RETRANSMITTED_IN_PKTS",
    "RETRANSMITTED_OUT_BYTES", "RETRANSMITTED_OUT_PKTS", "SRC_TO_DST_AVG_THROUGHPUT",
    "DST_TO_SRC_AVG_THROUGHPUT", "NUM_PKTS_UP_TO_128_BYTES", "NUM_PKTS_128_TO_256_BYTES",
    "NUM_PKTS_256_TO_512_BYTES", "NUM_PKTS_512_TO_1024_BYTES", "NUM_PKTS_1024_TO_1514_BYTES",
    "TCP_WIN_MAX_IN", "TCP_WIN_MAX_OUT", "ICMP_TYPE", "ICMP_IPV4_TYPE", "DNS_QUERY_ID", "DNS_QUERY_TYPE",
    "DNS_TTL_ANSWER", "FTP_COMMAND_RET_CODE", "Label", "Attack",
]  # fmt: skip
"""The 43 nProbe fields of the NF-v2 CSVs in header order, then ``Label`` and ``Attack``."""

# FlowTransformer's ``unified_flow_format`` include_fields, in the reference repo's order.
_INCLUDE_FIELDS = [
    "NUM_PKTS_UP_TO_128_BYTES", "SRC_TO_DST_SECOND_BYTES", "OUT_PKTS", "OUT_BYTES", "NUM_PKTS_128_TO_256_BYTES",
    "DST_TO_SRC_AVG_THROUGHPUT", "DURATION_IN", "L4_SRC_PORT", "ICMP_TYPE", "PROTOCOL", "SERVER_TCP_FLAGS",
    "IN_PKTS", "NUM_PKTS_512_TO_1024_BYTES", "CLIENT_TCP_FLAGS", "TCP_WIN_MAX_IN", "NUM_PKTS_256_TO_512_BYTES",
    "SHORTEST_FLOW_PKT", "MIN_IP_PKT_LEN", "LONGEST_FLOW_PKT", "L4_DST_PORT", "MIN_TTL",
    "DST_TO_SRC_SECOND_BYTES", "NUM_PKTS_1024_TO_1514_BYTES", "DURATION_OUT", "FLOW_DURATION_MILLISECONDS",
    "TCP_FLAGS", "MAX_TTL", "SRC_TO_DST_AVG_THROUGHPUT", "ICMP_IPV4_TYPE", "MAX_IP_PKT_LEN",
    "RETRANSMITTED_OUT_BYTES", "IN_BYTES", "RETRANSMITTED_IN_BYTES", "TCP_WIN_MAX_OUT", "L7_PROTO",
    "RETRANSMITTED_OUT_PKTS", "RETRANSMITTED_IN_PKTS",
]  # fmt: skip

NF_V2_CATEGORICAL: list[str] = [
    "CLIENT_TCP_FLAGS", "L4_SRC_PORT", "TCP_FLAGS", "ICMP_IPV4_TYPE", "ICMP_TYPE", "PROTOCOL",
    "SERVER_TCP_FLAGS", "L4_DST_PORT", "L7_PROTO",
]  # fmt: skip
"""The 9 categorical model fields, in FlowTransformer's order."""

NF_V2_NUMERIC: list[str] = [f for f in _INCLUDE_FIELDS if f not in NF_V2_CATEGORICAL]
"""The 28 numeric model fields, in FlowTransformer's include_fields order."""

BENIGN = "Benign"
ATTACK_FAMILIES: tuple[str, ...] = ("DoS", "DDoS", "Reconnaissance", "BruteForce", "Theft")
"""Attack class names written to the ``Attack`` column (benign rows say ``Benign``)."""

_FLOAT_COLUMNS = {"L7_PROTO", "SRC_TO_DST_SECOND_BYTES", "DST_TO_SRC_SECOND_BYTES", "FTP_COMMAND_RET_CODE"}

# ----------------------------------------------------------------------------- constants
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
_MTU = 1500
_UDP_HDR = 28  # IPv4 + UDP (and IPv4 + ICMP echo header)
_MAX_PAYLOAD = 3_000_000_000  # one flow moves at most ~3 GB each way (log-normal tails are clipped here)

# latent columns
ZI, ZO, ZD, ZP, ZC, ZS, ZL, ZM, ZR = range(9)
_NZ = 9

# templates
(T_HTTPS, T_HTTP, T_UPLOAD, T_QUIC, T_DNS, T_NTP, T_SSH, T_FTP, T_SMTP, T_IMAPS, T_SMB, T_PING, T_TCP_FAIL,
 T_TCP_SHORT, T_OTHER_TCP, T_OTHER_UDP, T_ICMP_UNREACH, A_UDP_FLOOD, A_DNS_TUNNEL, A_EXFIL_RAW) = range(20)

_BENIGN_MIX = {
    T_HTTPS: 0.25, T_HTTP: 0.13, T_UPLOAD: 0.015, T_QUIC: 0.05, T_DNS: 0.18, T_NTP: 0.02, T_SSH: 0.035,
    T_FTP: 0.01, T_SMTP: 0.025, T_IMAPS: 0.02, T_SMB: 0.04, T_PING: 0.025, T_TCP_FAIL: 0.06,
    T_TCP_SHORT: 0.04, T_OTHER_TCP: 0.05, T_OTHER_UDP: 0.045, T_ICMP_UNREACH: 0.005,
}

# OS table: 0 windows, 1 linux, 2 macos, 3 iot, 4 network device
_OS_TTL = np.array([128, 64, 64, 64, 255])
_OS_HDR = np.array([40, 52, 52, 40, 40])
_OS_SPORT = np.array([[49152, 65536], [32768, 61000], [49152, 65536], [32768, 61000], [1024, 65536]])
_OS_WIN = [([64240, 65535, 8192], [0.5, 0.35, 0.15]), ([64240, 29200, 65160], [0.65, 0.25, 0.1]),
           ([65535], [1.0]), ([5840, 14600, 29200], [0.3, 0.3, 0.4]), ([4128, 16384], [0.5, 0.5])]

# group kinds: benign bursts, then the attack families in ATTACK_FAMILIES order
K_SINGLE, K_WEB, K_ANSIBLE, K_MONITOR, K_BACKUP, K_DOS, K_DDOS, K_RECON, K_BRUTE, K_THEFT = range(10)
_RHO = {
    K_SINGLE: [0.0] * _NZ,
    K_WEB: [0.5, 0.3, 0.3, 0.3, 0.5, 1.0, 0.2, 1.0, 0.6],
    K_ANSIBLE: [0.85, 0.85, 0.6, 0.8, 0.7, 1.0, 0.2, 1.0, 0.6],
    K_MONITOR: [0.9, 0.9, 0.6, 0.9, 0.8, 0.9, 0.2, 1.0, 0.6],
    K_BACKUP: [0.7, 0.7, 0.5, 0.5, 0.5, 1.0, 0.2, 1.0, 0.7],
    K_DOS: [0.95, 0.95, 0.85, 0.9, 0.9, 1.0, 0.3, 1.0, 0.85],
    K_DDOS: [0.9, 0.9, 0.6, 0.8, 0.9, 1.0, 0.2, 1.0, 0.5],
    K_RECON: [0.95, 0.95, 0.85, 0.9, 0.75, 1.0, 0.3, 1.0, 0.85],
    K_BRUTE: [0.95, 0.95, 0.85, 0.9, 0.9, 1.0, 0.3, 1.0, 0.85],
    K_THEFT: [0.9, 0.9, 0.8, 0.9, 0.9, 1.0, 0.3, 1.0, 0.8],
}
# benign bursts: share of benign flows, size range, density range
_BURSTS = {K_WEB: (0.15, 2, 10, 0.2, 0.6), K_ANSIBLE: (0.01, 5, 25, 0.3, 0.7),
           K_MONITOR: (0.012, 5, 40, 0.2, 0.5), K_BACKUP: (0.008, 3, 12, 0.15, 0.4)}
# attack families: share of attack flows, median campaign size, variant probabilities
_FAMILY_WEIGHT = np.array([0.25, 0.22, 0.23, 0.15, 0.15])
_FAMILY_SIZE = np.array([80.0, 100.0, 60.0, 50.0, 30.0])
_VARIANTS = {
    K_DOS: [0.35, 0.2, 0.3, 0.15],  # http flood, https flood, syn flood, mixed
    K_DDOS: [0.4, 0.25, 0.2, 0.15],  # udp flood, syn flood, http flood, dns flood
    K_RECON: [0.45, 0.2, 0.35],  # syn scan, ping sweep, banner scan
    K_BRUTE: [0.5, 0.2, 0.3],  # ssh, ftp, web login
    K_THEFT: [0.35, 0.3, 0.15, 0.2],  # bulk exfil, beacon, dns tunnel, raw exfil
}
_DENSITY = {  # (kind, variant) -> (lo, hi); missing variant means the family default
    K_DOS: (0.75, 0.97), K_DDOS: (0.8, 0.97), K_RECON: (0.6, 0.95), K_BRUTE: (0.5, 0.9),
    (K_THEFT, 0): (0.4, 0.8), (K_THEFT, 1): (0.4, 0.7), (K_THEFT, 2): (0.5, 0.9), (K_THEFT, 3): (0.4, 0.8),
}
_SCAN_PORTS = np.array([21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995, 1433, 1723, 3306,
                        3389, 5432, 5900, 6379, 8080, 8443, 9200])


# ----------------------------------------------------------------------------- helpers
def _phi(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (tanh approximation; benign and attack flows share it, so marginals match)."""
    return 0.5 * (1.0 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))


def _pick(u: np.ndarray, probs) -> np.ndarray:
    """Index of the category that quantile ``u`` falls in, for category probabilities ``probs``."""
    c = np.cumsum(np.asarray(probs, dtype=float))
    return np.minimum(np.searchsorted(c / c[-1], u, side="right"), len(c) - 1)


def _choice(u: np.ndarray, values, probs) -> np.ndarray:
    return np.asarray(values)[_pick(u, probs)]


def _logn(z: np.ndarray, median: float, sigma: float) -> np.ndarray:
    return median * np.exp(sigma * z)


def _sizes(total: int, median: float, sigma: float, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Group sizes (log-normal, clipped to [lo, hi]) that sum exactly to ``total``."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    out, acc = [], 0
    while acc < total:
        s = np.clip(np.round(rng.lognormal(np.log(median), sigma, size=max(16, int(2 * total / median)))), lo, hi)
        out.append(s.astype(np.int64))
        acc += int(out[-1].sum())
    s = np.concatenate(out)
    cs = np.cumsum(s)
    k = int(np.searchsorted(cs, total))
    s = s[: k + 1].copy()
    s[-1] = total - (cs[k - 1] if k > 0 else 0)
    if len(s) > 1 and s[-1] < lo:  # fold a runt into the previous group
        s[-2] += s[-1]
        s = s[:-1]
    return s


# ----------------------------------------------------------------------------- hosts
@dataclass
class _Hosts:
    ip: np.ndarray  # (H,) str
    os: np.ndarray
    ttl: np.ndarray
    win: np.ndarray
    hdr: np.ndarray
    clients: np.ndarray  # internal client ids
    external: np.ndarray
    roles: dict[str, np.ndarray]

    @property
    def servers(self) -> np.ndarray:
        return np.concatenate([v for k, v in self.roles.items() if k not in ("monitor", "admin")])


_ROLES = {"web": 4, "dns": 2, "mail": 2, "file": 3, "ssh": 6, "ftp": 2, "db": 3, "monitor": 1, "admin": 1}


def _hosts(n_flows: int, rng: np.random.Generator) -> _Hosts:
    n_ic = int(np.clip(n_flows / 150, 40, 3000))
    n_srv = sum(_ROLES.values())
    n_ext = int(np.clip(n_flows / 15, 300, 60000))
    os = np.concatenate([
        _choice(rng.random(n_ic), [0, 1, 2, 3], [0.55, 0.15, 0.2, 0.1]),
        _choice(rng.random(n_srv), [1, 0], [0.75, 0.25]),
        _choice(rng.random(n_ext), [1, 0, 3, 4], [0.5, 0.3, 0.12, 0.08]),
    ])
    hops = np.concatenate([np.zeros(n_ic + n_srv, dtype=np.int64), rng.integers(4, 26, n_ext)])
    win = np.zeros(len(os), dtype=np.int64)
    u = rng.random(len(os))
    for k, (vals, probs) in enumerate(_OS_WIN):
        m = os == k
        win[m] = _choice(u[m], vals, probs)
    clients = np.arange(n_ic)
    ips = [f"192.168.{1 + i // 250}.{2 + i % 250}" for i in range(n_ic)]
    ips += [f"192.168.100.{10 + j}" for j in range(n_srv)]
    first = rng.choice(np.setdiff1d(np.arange(1, 224), [10, 100, 127, 169, 172, 192]), n_ext)
    rest = rng.integers(0, 256, (n_ext, 3))
    rest[:, 2] = np.maximum(rest[:, 2], 1)
    ips += [f"{a}.{b}.{c}.{d}" for a, (b, c, d) in zip(first.tolist(), rest.tolist(), strict=True)]
    roles, start = {}, n_ic
    for r, k in _ROLES.items():
        roles[r] = np.arange(start, start + k)
        start += k
    return _Hosts(ip=np.array(ips), os=os, ttl=_OS_TTL[os] - hops, win=win, hdr=_OS_HDR[os], clients=clients,
                  external=np.arange(n_ic + n_srv, n_ic + n_srv + n_ext), roles=roles)


# per benign template: (p_inbound, inbound server role, p_outbound_to_internal, outbound internal role)
_HOST_SPEC = {
    T_HTTPS: (0.2, "web", 0.05, "web"), T_HTTP: (0.3, "web", 0.05, "web"), T_UPLOAD: (0.1, "web", 0.1, "file"),
    T_QUIC: (0.0, "web", 0.0, "web"), T_DNS: (0.0, "dns", 0.85, "dns"), T_NTP: (0.0, "web", 0.0, "web"),
    T_SSH: (0.2, "ssh", 0.7, "ssh"), T_FTP: (0.4, "ftp", 0.3, "ftp"), T_SMTP: (0.5, "mail", 0.8, "mail"),
    T_IMAPS: (0.1, "mail", 0.7, "mail"), T_SMB: (0.0, "file", 1.0, "file"), T_PING: (0.2, "any", 0.5, "any"),
    T_TCP_FAIL: (0.5, "any", 0.2, "any"), T_TCP_SHORT: (0.1, "any", 0.8, "any"),
    T_OTHER_TCP: (0.2, "any", 0.4, "db"), T_OTHER_UDP: (0.05, "any", 0.5, "any"),
    T_ICMP_UNREACH: (0.3, "any", 0.5, "any"), A_UDP_FLOOD: (0.0, "web", 0.0, "web"),
    A_DNS_TUNNEL: (0.0, "dns", 0.5, "dns"), A_EXFIL_RAW: (0.0, "web", 0.0, "web"),
}


def _role(h: _Hosts, role: str) -> np.ndarray:
    return h.servers if role == "any" else h.roles[role]


def _benign_hosts(h: _Hosts, tmpl: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(tmpl)
    cli = h.clients[rng.integers(0, len(h.clients), n)]
    srv = h.external[rng.integers(0, len(h.external), n)]
    u_in, u_int = rng.random(n), rng.random(n)
    for t, (p_in, r_in, p_int, r_int) in _HOST_SPEC.items():
        m = tmpl == t
        if not m.any():
            continue
        inbound = m & (u_in < p_in)
        cli[inbound] = h.external[rng.integers(0, len(h.external), int(inbound.sum()))]
        pool = _role(h, r_in)
        srv[inbound] = pool[rng.integers(0, len(pool), int(inbound.sum()))]
        internal = m & ~inbound & (u_int < p_int)
        pool = _role(h, r_int)
        srv[internal] = pool[rng.integers(0, len(pool), int(internal.sum()))]
    return cli, srv


# ----------------------------------------------------------------------------- flow rendering
class _Flows:
    """Per-flow core quantities; :meth:`finalize` derives the NF-v2 columns from them."""

    def __init__(self, n: int, z: np.ndarray, rng: np.random.Generator) -> None:
        self.n, self.z, self.u, self.rng = n, z, _phi(z), rng
        i64 = lambda: np.zeros(n, dtype=np.int64)  # noqa: E731
        self.proto, self.sport, self.dport = i64(), i64(), i64() - 1
        self.l7 = np.zeros(n)
        self.in_pay, self.out_pay = i64(), i64()
        self.in_data, self.out_data, self.in_ctrl, self.out_ctrl = i64(), i64(), i64(), i64()
        self.hdr_in, self.hdr_out = i64(), i64()
        self.cflags, self.sflags = i64(), i64()
        self.dur = np.zeros(n)
        self.win_in, self.win_out = i64(), i64()
        self.icmp, self.icmp4 = i64(), i64()
        self.dns_id, self.dns_type, self.dns_ttl = i64(), i64(), i64()
        self.ftp_code = np.zeros(n)
        self.sub = i64() - 1  # preset sub-variant, -1 = from latent

    # --- shared pieces
    def _dport(self, i, values, probs) -> None:
        """Destination port from the sub-variant latent unless preset; values < 0 mean a random high port."""
        free = i[self.dport[i] < 0]
        p = _choice(self.u[free, ZS], values, probs)
        rand = p < 0
        p[rand] = self.rng.integers(1024, 65536, int(rand.sum()))
        self.dport[free] = p

    def _duration(self, i, think_ms: float, sigma: float, nbytes) -> np.ndarray:
        rate_bps = _logn(self.z[i, ZR], 2e7, 1.0)
        return _logn(self.z[i, ZD], think_ms, sigma) + nbytes * 8.0 / rate_bps * 1e3

    def _tcp(self, i, req, resp, avg_in: float = 1448.0, avg_out: float = 1448.0, probs=None) -> None:
        """A complete TCP session: handshake, data both ways, ACKs, a close pattern."""
        req, resp = np.round(req).astype(np.int64), np.round(resp).astype(np.int64)
        self.proto[i] = 6
        self.in_pay[i], self.out_pay[i] = req, resp
        self.in_data[i] = np.ceil(req / avg_in).astype(np.int64)
        self.out_data[i] = np.ceil(resp / avg_out).astype(np.int64)
        # FIN close, client RST, server RST, still open, client abort
        pat = _pick(self.u[i, ZC], probs or [0.62, 0.1, 0.08, 0.15, 0.05])
        c = np.array([27, 31, 27, 26, 30])[pat]
        s = np.array([27, 27, 30, 26, 26])[pat]
        c = np.where(req > 0, c, c & ~PSH)
        s = np.where(resp > 0, s, s & ~PSH)
        self.cflags[i], self.sflags[i] = c, s
        self.in_ctrl[i] = 2 + (self.out_data[i] + 1) // 2 + ((c & (FIN | RST)) > 0)
        self.out_ctrl[i] = 1 + (self.in_data[i] + 1) // 2 + ((s & (FIN | RST)) > 0)

    def _udp(self, i, req, resp, n_in, n_out) -> None:
        self.proto[i] = 17
        self.in_pay[i] = np.round(req).astype(np.int64)
        self.out_pay[i] = np.round(resp).astype(np.int64)
        self.in_data[i] = np.where(self.in_pay[i] > 0, np.maximum(n_in, 1), 0)
        self.out_data[i] = np.where(self.out_pay[i] > 0, np.maximum(n_out, 1), 0)

    # --- templates
    def https(self, i, upload: bool = False) -> None:
        z = self.z[i]
        self._dport(i, [443, 8443], [0.93, 0.07])
        self.l7[i] = _choice(self.u[i, ZM], [91.0, 91.126, 91.178, 91.212, 91.119], [0.4, 0.25, 0.15, 0.12, 0.08])
        if upload:
            req, resp = _logn(z[:, ZI], 2e6, 1.4), _logn(z[:, ZO], 2500, 0.6)
        else:
            req, resp = _logn(z[:, ZI], 900, 0.9), _logn(z[:, ZO], 6000, 2.0)
        self._tcp(i, req, resp)
        self.dur[i] = self._duration(i, 900, 1.4, req + resp)

    def http(self, i) -> None:
        z = self.z[i]
        self._dport(i, [80, 8080], [0.85, 0.15])
        self.l7[i] = _choice(self.u[i, ZM], [7.0, 7.126, 7.178], [0.85, 0.08, 0.07])
        req, resp = _logn(z[:, ZI], 420, 0.45), _logn(z[:, ZO], 3500, 1.8)
        self._tcp(i, req, resp)
        self.dur[i] = self._duration(i, 120, 1.3, req + resp)

    def quic(self, i) -> None:
        z = self.z[i]
        self.dport[i] = 443
        self.l7[i] = _choice(self.u[i, ZM], [188.0, 188.126], [0.4, 0.6])
        req, resp = _logn(z[:, ZI], 2500, 1.2), _logn(z[:, ZO], 3e4, 2.0)
        n_out = np.ceil(resp / 1250)
        self._udp(i, req, resp, np.ceil(req / 1250) + np.ceil(n_out / 3), n_out + 1)
        self.dur[i] = self._duration(i, 600, 1.4, req + resp)

    def dns(self, i, tunnel: bool = False) -> None:
        z, u, rng = self.z[i], self.u[i], self.rng
        n = len(i)
        self.dport[i] = 53
        self.l7[i] = _choice(u[:, ZM], [5.0, 5.126, 5.178, 5.239], [0.5, 0.2, 0.15, 0.15])
        q = _logn(z[:, ZI], 190 if tunnel else 38, 0.15 if tunnel else 0.25)
        retry = u[:, ZP] > (0.6 if tunnel else 0.92)
        answered = u[:, ZC] > 0.04
        a = np.where(answered, q + _logn(z[:, ZO], 160 if tunnel else 75, 0.6), 0)
        self._udp(i, q * (1 + retry), a, 1 + retry, 1)
        self.dur[i] = np.where(answered, _logn(z[:, ZD], 15, 1.0), 0) + retry * 1000.0
        self.dns_id[i] = rng.integers(1, 65536, n)
        self.dns_type[i] = 16 if tunnel else _choice(rng.random(n), [1, 28, 12, 65, 16, 15],
                                                     [0.6, 0.25, 0.05, 0.05, 0.03, 0.02])
        ttl = _choice(rng.random(n), [60, 300, 3600, 86400, -1], [0.25, 0.35, 0.15, 0.05, 0.2])
        ttl = np.where(ttl < 0, np.round(_logn(rng.standard_normal(n), 120, 1.5)), ttl)
        self.dns_ttl[i] = np.where(answered, 0 if tunnel else ttl, 0)

    def ntp(self, i) -> None:
        self.dport[i] = 123
        self.l7[i] = 9.0
        same = self.u[i, ZM] < 0.5
        self.sport[i] = np.where(same, 123, 0)  # 0 = ephemeral, filled in later
        answered = self.u[i, ZC] > 0.03
        self._udp(i, np.full(len(i), 48), np.where(answered, 48, 0), 1, 1)
        self.dur[i] = np.where(answered, _logn(self.z[i, ZD], 12, 0.8), 0)

    def ssh(self, i) -> None:
        z, u = self.z[i], self.u[i]
        self.dport[i] = np.where(self.dport[i] < 0, 22, self.dport[i])
        self.l7[i] = 92.0
        sub = np.where(self.sub[i] >= 0, self.sub[i], _pick(u[:, ZS], [0.6, 0.3, 0.1]))
        req, resp = _logn(z[:, ZI], 2300, 0.3), _logn(z[:, ZO], 3200, 0.3)  # short login / automated run
        avg_in, avg_out = np.full(len(i), 180.0), np.full(len(i), 250.0)
        think = _logn(z[:, ZD], 1800, 0.7)
        m = sub == 1  # interactive
        req[m], resp[m] = _logn(z[m, ZI], 3e4, 1.3), _logn(z[m, ZO], 1.5e5, 1.6)
        avg_in[m], avg_out[m], think[m] = 70.0, 400.0, _logn(z[m, ZD], 4e5, 1.3)
        m = sub == 2  # scp, either way
        up = u[m, ZM] < 0.5
        big, small = _logn(z[m, ZI], 3e7, 1.5), _logn(z[m, ZO], 5e4, 0.8)
        req[m], resp[m] = np.where(up, big, small), np.where(up, small, big)
        avg_in[m], avg_out[m] = 1448.0, 1448.0
        self._tcp(i, req, resp, 1.0, 1.0)
        self.in_data[i] = np.ceil(req / avg_in).astype(np.int64)
        self.out_data[i] = np.ceil(resp / avg_out).astype(np.int64)
        self.in_ctrl[i] = 2 + (self.out_data[i] + 1) // 2 + ((self.cflags[i] & (FIN | RST)) > 0)
        self.out_ctrl[i] = 1 + (self.in_data[i] + 1) // 2 + ((self.sflags[i] & (FIN | RST)) > 0)
        self.dur[i] = think + (req + resp) * 8.0 / _logn(z[:, ZR], 2e7, 1.0) * 1e3

    def ftp(self, i, attack: np.ndarray) -> None:
        z = self.z[i]
        self.dport[i] = 21
        self.l7[i] = 1.0
        req, resp = _logn(z[:, ZI], 150, 0.4), _logn(z[:, ZO], 500, 0.4)
        self._tcp(i, req, resp, 30.0, 60.0)
        self.dur[i] = self._duration(i, 2500, 1.0, req + resp)
        code = _choice(self.rng.random(len(i)), [226.0, 230.0, 530.0, 221.0], [0.5, 0.3, 0.1, 0.1])
        self.ftp_code[i] = np.where(attack, 530.0, code)

    def smtp(self, i) -> None:
        z = self.z[i]
        self._dport(i, [25, 587, 465], [0.5, 0.35, 0.15])
        self.l7[i] = np.where(self.dport[i] == 465, 29.0, 3.0)
        req, resp = _logn(z[:, ZI], 2e4, 1.6), _logn(z[:, ZO], 1500, 0.5)
        self._tcp(i, req, resp, 1448.0, 120.0)
        self.dur[i] = self._duration(i, 2000, 1.0, req + resp)

    def imaps(self, i) -> None:
        z = self.z[i]
        self._dport(i, [993, 995], [0.8, 0.2])
        self.l7[i] = np.where(self.dport[i] == 993, 51.0, 23.0)
        req, resp = _logn(z[:, ZI], 1500, 0.8), _logn(z[:, ZO], 2e4, 2.0)
        self._tcp(i, req, resp, 200.0, 1448.0)
        self.dur[i] = self._duration(i, 5000, 2.0, req + resp)

    def smb(self, i) -> None:
        z, u = self.z[i], self.u[i]
        self.dport[i] = 445
        self.l7[i] = 41.0
        sub = np.where(self.sub[i] >= 0, self.sub[i], _pick(u[:, ZS], [0.55, 0.25, 0.2]))  # browse, read, write
        req, resp = _logn(z[:, ZI], 3000, 1.0), _logn(z[:, ZO], 6000, 1.2)
        m = sub == 1
        resp[m] = _logn(z[m, ZO], 2e6, 1.6)
        m = sub == 2
        req[m] = _logn(z[m, ZI], 3e6, 1.6)
        self._tcp(i, req, resp, 900.0, 900.0)
        self.dur[i] = self._duration(i, 400, 1.5, req + resp)

    def ping(self, i) -> None:
        u, z = self.u[i], self.z[i]
        self.proto[i], self.l7[i] = 1, 81.0
        self.dport[i], self.sport[i] = 0, -1
        cnt = _choice(u[:, ZM], [1, 2, 3, 4, 5], [0.3, 0.1, 0.1, 0.4, 0.1])
        cnt = np.where(cnt == 5, 5 + np.round(_logn(z[:, ZP], 10, 1.0)), cnt).astype(np.int64)
        pay = np.where(self.hdr_in[i] == 40, 32, 56)  # Windows ping vs Linux/macOS ping payloads
        answered = u[:, ZC] > 0.12
        self.in_pay[i], self.in_data[i] = cnt * pay, cnt
        self.out_pay[i], self.out_data[i] = np.where(answered, cnt * pay, 0), np.where(answered, cnt, 0)
        self.dur[i] = (cnt - 1) * 1000.0 + _logn(z[:, ZD], 2, 1.0)
        self.icmp[i], self.icmp4[i] = 8 * 256, 8

    def icmp_unreach(self, i) -> None:
        self.proto[i], self.l7[i] = 1, 81.0
        self.dport[i], self.sport[i] = 0, -1
        self.in_pay[i] = np.round(_logn(self.z[i, ZI], 60, 0.3)).astype(np.int64)
        self.in_data[i] = 1
        self.icmp[i], self.icmp4[i] = 3 * 256 + 3, 3

    def tcp_fail(self, i) -> None:
        u, z = self.u[i], self.z[i]
        n = len(i)
        self.proto[i], self.l7[i] = 6, 0.0
        self._dport(i, [443, 80, 22, 445, 3389, 23, 8080, 25, 21, 3306, 5900, 1433, -1],
                    [0.2, 0.15, 0.06, 0.06, 0.05, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01, 0.01, 0.33])
        pat = _pick(u[:, ZC], [0.45, 0.4, 0.1, 0.05])  # filtered, closed (RST), probe+abort, half-open
        retries = _choice(u[:, ZP], [1, 2, 3], [0.5, 0.3, 0.2])
        self.cflags[i] = np.array([2, 2, 6, 2])[pat]
        self.sflags[i] = np.array([0, 20, 18, 18])[pat]
        self.in_ctrl[i] = np.select([pat == 0, pat == 2], [retries, 2], 1)
        self.out_ctrl[i] = np.select([pat == 0, pat == 3], [0, retries], 1)
        wait = np.array([0.0, 1000.0, 3000.0])[retries - 1]
        rtt = _logn(z[:, ZD], 1.5, 1.0)
        self.dur[i] = np.select([pat == 0, pat == 3], [wait, wait + rtt], rtt)
        self.in_pay[i] = self.out_pay[i] = np.zeros(n, dtype=np.int64)

    def tcp_short(self, i) -> None:
        u, z = self.u[i], self.z[i]
        self.proto[i] = 6
        self._dport(i, [80, 443, 22, 8080, 3306, 5432, 6379, 25, 21, 3389, 9200, -1],
                    [0.2, 0.2, 0.15, 0.08, 0.06, 0.05, 0.05, 0.05, 0.05, 0.05, 0.03, 0.03])
        pat = _pick(u[:, ZC], [0.45, 0.3, 0.25])  # connect+FIN, connect+RST, banner read
        banner = pat == 2
        self.cflags[i] = np.array([19, 22, 19])[pat]
        self.sflags[i] = np.array([19, 18, 27])[pat]
        self.out_pay[i] = np.where(banner, np.round(_logn(z[:, ZO], 45, 0.5)), 0).astype(np.int64)
        self.out_data[i] = banner.astype(np.int64)
        self.in_ctrl[i] = 3
        self.out_ctrl[i] = np.where(pat == 1, 1, 2)
        p = self.dport[i]
        l7 = np.select([p == 22, p == 21, p == 25], [92.0, 1.0, 3.0], 0.0)
        self.l7[i] = np.where(banner, l7, 0.0)
        self.dur[i] = _logn(z[:, ZD], 3, 1.2)

    def other_tcp(self, i) -> None:
        z = self.z[i]
        self._dport(i, [3389, 3306, 5432, 8443, 5228, 1883, -1], [0.2, 0.12, 0.08, 0.1, 0.1, 0.05, 0.35])
        p = self.dport[i]
        self.l7[i] = np.select([p == 3389, p == 3306, p == 5432, p == 8443, p == 5228, p == 1883],
                               [88.0, 20.0, 19.0, 91.0, 91.126, 222.0], 0.0)
        req, resp = _logn(z[:, ZI], 4000, 1.8), _logn(z[:, ZO], 8000, 2.0)
        self._tcp(i, req, resp, 600.0, 900.0)
        self.dur[i] = self._duration(i, 3000, 2.0, req + resp)

    def other_udp(self, i) -> None:
        u, z = self.u[i], self.z[i]
        p = _choice(u[:, ZS], [137, 138, 1900, 5353, 514, 161, -1], [0.15, 0.1, 0.15, 0.15, 0.1, 0.1, 0.25])
        rtp = p < 0
        p[rtp] = self.rng.integers(10000, 60000, int(rtp.sum()))
        self.dport[i] = p
        self.l7[i] = np.select([p == 137, p == 138, p == 1900, p == 5353, p == 514, p == 161],
                               [10.0, 10.0, 12.0, 8.0, 17.0, 14.0], 87.0)
        self.sport[i] = np.where((p == 137) | (p == 138) | (p == 5353), p, 0)
        one_way = (p == 138) | (p == 1900) | (p == 514)
        n_in = np.where(rtp, np.round(_logn(z[:, ZP], 800, 1.2)), np.round(_logn(z[:, ZP], 1.5, 0.5)))
        n_in = np.maximum(n_in, 1)
        size = np.where(rtp, 172.0, _logn(z[:, ZI], 180, 0.5))
        n_out = np.where(one_way, 0, np.where(rtp, n_in, 1))
        self._udp(i, n_in * size, n_out * np.where(rtp, 172.0, _logn(z[:, ZO], 200, 0.6)), n_in, n_out)
        self.dur[i] = np.where(rtp, n_in * 20.0, _logn(z[:, ZD], 30, 1.5)) * (n_in > 1)

    def udp_flood(self, i) -> None:
        u, z = self.u[i], self.z[i]
        self._dport(i, [80, 53, 443, 123, -1], [0.35, 0.2, 0.2, 0.1, 0.15])
        self.l7[i] = 0.0
        n = np.maximum(np.round(_logn(z[:, ZP], 4, 0.8)), 1)
        size = np.floor(1 + u[:, ZI] * 1400)
        self._udp(i, n * size, np.zeros(len(i)), n, 0)
        self.dur[i] = (n - 1) * _logn(z[:, ZD], 50, 1.0)

    def exfil_raw(self, i) -> None:
        z = self.z[i]
        self._dport(i, [4444, 8081, 31337, 6667, -1], [0.3, 0.2, 0.1, 0.1, 0.3])
        self.l7[i] = 0.0
        req, resp = _logn(z[:, ZI], 5e6, 1.2), _logn(z[:, ZO], 800, 0.5)
        self._tcp(i, req, resp)
        self.dur[i] = self._duration(i, 500, 1.0, req + resp)

    # --- derived columns
    def finalize(self, h: _Hosts, cli: np.ndarray, srv: np.ndarray, tool: np.ndarray) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        tcp = self.proto == 6
        # TCP header size and SYN window come from the host's OS; packet tools override both
        self.hdr_in = np.where(tcp, h.hdr[cli], _UDP_HDR)
        self.hdr_out = np.where(tcp, h.hdr[srv], _UDP_HDR)
        self.win_in = np.where(tcp, h.win[cli], 0)
        self.win_out = np.where(tcp, h.win[srv], 0)
        for k, (win, hdr) in enumerate([(512, 40), (1024, 44)], start=1):
            m = tcp & (tool == k)
            self.win_in[m], self.hdr_in[m] = win, hdr
            self.in_ctrl[m] = np.minimum(self.in_ctrl[m], np.where(self.cflags[m] == 6, 2, 1))
        # ephemeral source ports by OS
        lo, hi = _OS_SPORT[h.os[cli], 0], _OS_SPORT[h.os[cli], 1]
        eph = (lo + np.floor(rng.random(n) * (hi - lo))).astype(np.int64)
        sport = np.where(self.sport == 0, eph, self.sport)
        sport = np.where(self.sport < 0, 0, sport)
        sport = np.where(self.proto == 1, 0, sport)

        cols: dict[str, np.ndarray] = {}
        pkts, byts, hist, longest, shortest = [], [], np.zeros((n, 5), dtype=np.int64), [], []
        edges = np.array([128, 256, 512, 1024])
        for pay, data, ctrl, hdr in ((self.in_pay, self.in_data, self.in_ctrl, self.hdr_in),
                                     (self.out_pay, self.out_data, self.out_ctrl, self.hdr_out)):
            maxpay = _MTU - hdr
            pay = np.clip(pay, 0, _MAX_PAYLOAD)
            data = np.where(pay > 0, np.clip(np.maximum(data, -(-pay // maxpay)), 1, np.maximum(pay, 1)), 0)
            # TCP segments bulk data into full-size packets plus a remainder; datagrams and chatty
            # sessions (average payload under half a packet) send equal-sized packets
            bulk = tcp & (pay > data * maxpay // 2)
            n_full = np.minimum(pay // maxpay, (pay - data) // (maxpay - 1))
            n_full = np.where(bulk & (data > 0), np.clip(n_full, 0, np.maximum(data - 1, 0)), 0)
            m_rest = data - n_full
            rest = pay - n_full * maxpay
            avg = np.where(m_rest > 0, rest / np.maximum(m_rest, 1), 0)
            size_rest = hdr + np.ceil(avg).astype(np.int64)
            p = data + ctrl
            pkts.append(p)
            byts.append(pay + hdr * p)
            hist[:, 0] += ctrl
            hist[:, 4] += n_full
            hist[np.arange(n), np.searchsorted(edges, hdr + np.floor(avg).astype(np.int64))] += m_rest
            longest.append(np.max([np.where(ctrl > 0, hdr, 0), np.where(n_full > 0, _MTU, 0),
                                   np.where(m_rest > 0, size_rest, 0)], axis=0))
            big = np.iinfo(np.int64).max
            shortest.append(np.min([np.where(ctrl > 0, hdr, big),
                                    np.where(m_rest > 0, hdr + np.floor(avg).astype(np.int64), big),
                                    np.where(n_full > 0, _MTU, big)], axis=0))
        in_pkts, out_pkts = pkts
        in_bytes, out_bytes = byts
        longest_pkt = np.maximum(*longest)
        shortest_pkt = np.minimum(*shortest)
        shortest_pkt = np.where(in_pkts + out_pkts > 0, shortest_pkt, 0)

        dur = np.where(in_pkts + out_pkts > 1, np.maximum(self.dur, 0), 0)
        dur_ms = np.round(dur).astype(np.int64)
        frac = rng.uniform(0.7, 1.0, (2, n))
        dur_in = np.where(in_pkts > 1, np.round(dur * frac[0]), 0).astype(np.int64)
        dur_out = np.where(out_pkts > 1, np.round(dur * frac[1]), 0).astype(np.int64)
        secs = np.maximum(dur / 1e3, 1e-3)
        started = np.maximum(np.ceil(dur / 1e3), 1)
        # retransmissions on lossy paths
        lossy = self.u[:, ZL] > 0.92
        rate = np.where(lossy & tcp, rng.uniform(0.005, 0.05, n), 0.0)
        rin = rng.binomial(self.in_data.clip(0), rate)
        rout = rng.binomial(self.out_data.clip(0), rate)
        avg_in = np.where(in_pkts > 0, in_bytes / np.maximum(in_pkts, 1), 0)
        avg_out = np.where(out_pkts > 0, out_bytes / np.maximum(out_pkts, 1), 0)

        ttl_c, ttl_s = h.ttl[cli], h.ttl[srv]
        answered = out_pkts > 0
        no_out_win = ~answered | (self.sflags == (RST | ACK))

        cols["IPV4_SRC_ADDR"] = cli
        cols["L4_SRC_PORT"] = sport
        cols["IPV4_DST_ADDR"] = srv
        cols["L4_DST_PORT"] = np.where(self.proto == 1, 0, self.dport)
        cols["PROTOCOL"] = self.proto
        cols["L7_PROTO"] = self.l7
        cols["IN_BYTES"], cols["IN_PKTS"] = in_bytes, in_pkts
        cols["OUT_BYTES"], cols["OUT_PKTS"] = out_bytes, out_pkts
        cols["TCP_FLAGS"] = np.where(tcp, self.cflags | self.sflags, 0)
        cols["CLIENT_TCP_FLAGS"] = np.where(tcp, self.cflags, 0)
        cols["SERVER_TCP_FLAGS"] = np.where(tcp, self.sflags, 0)
        cols["FLOW_DURATION_MILLISECONDS"], cols["DURATION_IN"], cols["DURATION_OUT"] = dur_ms, dur_in, dur_out
        cols["MIN_TTL"] = np.where(answered, np.minimum(ttl_c, ttl_s), ttl_c)
        cols["MAX_TTL"] = np.where(answered, np.maximum(ttl_c, ttl_s), ttl_c)
        cols["LONGEST_FLOW_PKT"], cols["SHORTEST_FLOW_PKT"] = longest_pkt, shortest_pkt
        cols["MIN_IP_PKT_LEN"] = np.where(answered & (in_pkts > 0), shortest_pkt, 0)
        cols["MAX_IP_PKT_LEN"] = longest_pkt
        cols["SRC_TO_DST_SECOND_BYTES"] = in_bytes / started
        cols["DST_TO_SRC_SECOND_BYTES"] = out_bytes / started
        cols["RETRANSMITTED_IN_BYTES"] = np.round(rin * avg_in).astype(np.int64)
        cols["RETRANSMITTED_IN_PKTS"] = rin
        cols["RETRANSMITTED_OUT_BYTES"] = np.round(rout * avg_out).astype(np.int64)
        cols["RETRANSMITTED_OUT_PKTS"] = rout
        cols["SRC_TO_DST_AVG_THROUGHPUT"] = np.round(in_bytes * 8 / secs).astype(np.int64)
        cols["DST_TO_SRC_AVG_THROUGHPUT"] = np.round(out_bytes * 8 / secs).astype(np.int64)
        for k, name in enumerate(["NUM_PKTS_UP_TO_128_BYTES", "NUM_PKTS_128_TO_256_BYTES", "NUM_PKTS_256_TO_512_BYTES",
                                  "NUM_PKTS_512_TO_1024_BYTES", "NUM_PKTS_1024_TO_1514_BYTES"]):
            cols[name] = hist[:, k]
        cols["TCP_WIN_MAX_IN"] = np.where(tcp & (in_pkts > 0), self.win_in, 0)
        cols["TCP_WIN_MAX_OUT"] = np.where(tcp & ~no_out_win, self.win_out, 0)
        cols["ICMP_TYPE"], cols["ICMP_IPV4_TYPE"] = self.icmp, self.icmp4
        cols["DNS_QUERY_ID"], cols["DNS_QUERY_TYPE"], cols["DNS_TTL_ANSWER"] = self.dns_id, self.dns_type, self.dns_ttl
        cols["FTP_COMMAND_RET_CODE"] = self.ftp_code
        return cols


def _render(f: _Flows, tmpl: np.ndarray, fam: np.ndarray) -> None:
    for t in np.unique(tmpl):
        i = np.flatnonzero(tmpl == t)
        if t == T_HTTPS:
            f.https(i)
        elif t == T_UPLOAD:
            f.https(i, upload=True)
        elif t == T_HTTP:
            f.http(i)
        elif t == T_QUIC:
            f.quic(i)
        elif t == T_DNS:
            f.dns(i)
        elif t == A_DNS_TUNNEL:
            f.dns(i, tunnel=True)
        elif t == T_NTP:
            f.ntp(i)
        elif t == T_SSH:
            f.ssh(i)
        elif t == T_FTP:
            f.ftp(i, fam[i] >= 0)
        elif t == T_SMTP:
            f.smtp(i)
        elif t == T_IMAPS:
            f.imaps(i)
        elif t == T_SMB:
            f.smb(i)
        elif t == T_PING:
            f.ping(i)
        elif t == T_ICMP_UNREACH:
            f.icmp_unreach(i)
        elif t == T_TCP_FAIL:
            f.tcp_fail(i)
        elif t == T_TCP_SHORT:
            f.tcp_short(i)
        elif t == T_OTHER_TCP:
            f.other_tcp(i)
        elif t == T_OTHER_UDP:
            f.other_udp(i)
        elif t == A_UDP_FLOOD:
            f.udp_flood(i)
        elif t == A_EXFIL_RAW:
            f.exfil_raw(i)
        else:  # pragma: no cover - every template id is handled above
            raise AssertionError(t)


# ----------------------------------------------------------------------------- traffic: groups of flows
@dataclass
class _Groups:
    """Bursts and campaigns: one row per group."""

    kind: np.ndarray
    variant: np.ndarray
    size: np.ndarray
    density: np.ndarray


def _groups(n_benign_burst: dict[int, int], n_attack: int, rng: np.random.Generator) -> _Groups:
    kinds, variants, sizes, dens = [], [], [], []
    for k, total in n_benign_burst.items():
        _, lo, hi, dlo, dhi = _BURSTS[k]
        s = _sizes(total, (lo + hi) / 3, 0.6, lo, hi, rng) if k != K_WEB else _sizes(total, 3, 0.5, lo, hi, rng)
        kinds.append(np.full(len(s), k))
        variants.append(_pick(rng.random(len(s)), [0.35, 0.65] if k == K_WEB else [0.5, 0.5]))
        sizes.append(s)
        dens.append(rng.uniform(dlo, dhi, len(s)))
    # attack flows per family: every family gets at least a share when there are enough flows
    share = np.floor(_FAMILY_WEIGHT * n_attack).astype(np.int64)
    share[np.argmax(_FAMILY_WEIGHT)] += n_attack - share.sum()
    for fam_i, total in enumerate(share.tolist()):
        k = K_DOS + fam_i
        s = _sizes(total, _FAMILY_SIZE[fam_i], 0.7, 8, 1500, rng)
        v = _pick(rng.random(len(s)), _VARIANTS[k])
        d = np.empty(len(s))
        for var in np.unique(v):
            lo, hi = _DENSITY.get((k, int(var)), _DENSITY.get(k, (0.5, 0.9)))
            m = v == var
            d[m] = rng.uniform(lo, hi, int(m.sum()))
        kinds.append(np.full(len(s), k))
        variants.append(v)
        sizes.append(s)
        dens.append(d)
    return _Groups(kind=np.concatenate(kinds).astype(np.int64), variant=np.concatenate(variants).astype(np.int64),
                   size=np.concatenate(sizes).astype(np.int64), density=np.concatenate(dens))


def _simulate(n_flows: int, seed: int, attack_fraction: float) -> dict[str, np.ndarray]:
    """All flows as NF-v2 columns (host ids instead of IP strings, family ids), in generation order.

    ``_order`` is the permutation into time order and ``_hosts_ip`` maps host ids to addresses.
    """
    if n_flows < 1:
        raise ValueError(f"n_flows must be >= 1, got {n_flows}")
    if not 0.0 <= attack_fraction < 1.0:
        raise ValueError(f"attack_fraction must be in [0, 1), got {attack_fraction}")
    rng = np.random.default_rng(seed)
    h = _hosts(n_flows, rng)
    n_attack = int(round(n_flows * attack_fraction))
    n_benign = n_flows - n_attack
    burst_total = {k: int(share * n_benign) for k, (share, *_rest) in _BURSTS.items()} if n_benign > 200 else {}
    g = _groups(burst_total, n_attack, rng)
    n_single = n_benign - int(sum(burst_total.values()))
    G = len(g.size)

    # --- members
    gid = np.concatenate([np.full(n_single, -1), np.repeat(np.arange(G), g.size)])
    n = len(gid)
    grouped = gid >= 0
    gg = np.where(grouped, gid, 0)
    starts = np.concatenate([[0], np.cumsum(g.size)[:-1]]) if G else np.zeros(0, dtype=np.int64)
    pos = np.where(grouped, np.arange(n) - n_single - starts[gg] if G else 0, 0)
    kind = np.where(grouped, g.kind[gg] if G else 0, K_SINGLE)
    var = np.where(grouped, g.variant[gg] if G else 0, 0)
    fam = np.where(kind >= K_DOS, kind - K_DOS, -1)

    # --- time: one benign flow per unit; a group of density d adds d / (1 - d) flows per unit
    T = float(max(n_benign, 1))
    t = np.empty(n)
    t[:n_single] = rng.uniform(0, T, n_single)
    if G:
        gap = (1 - g.density) / g.density
        span = g.size * gap
        t0 = rng.uniform(0, 1, G) * np.maximum(T - span, 0)
        steps = rng.exponential(1.0, n - n_single) * gap[gid[n_single:]]
        cs = np.cumsum(steps)
        t[n_single:] = t0[gid[n_single:]] + cs - (cs[starts] - steps[starts])[gid[n_single:]]

    # --- templates and presets
    tmpl = np.full(n, -1)
    benign_ids = np.array(list(_BENIGN_MIX))
    tmpl[:n_single] = _choice(rng.random(n_single), benign_ids, list(_BENIGN_MIX.values()))
    gu = rng.random((max(G, 1), 4))  # per-group uniforms for group-level choices
    mu = rng.random(n)  # per-member uniform
    dport = np.full(n, -1)
    sub = np.full(n, -1)
    tool = np.zeros(n, dtype=np.int64)

    def sel(k, v=None):
        return (kind == k) if v is None else (kind == k) & (var == v)

    tmpl[sel(K_WEB, 0)] = T_HTTP
    tmpl[sel(K_WEB, 1)] = T_HTTPS
    tmpl[sel(K_ANSIBLE)] = T_SSH
    sub[sel(K_ANSIBLE)] = 0
    tmpl[sel(K_MONITOR, 0)] = T_PING
    tmpl[sel(K_MONITOR, 1)] = T_TCP_SHORT
    tmpl[sel(K_BACKUP, 0)] = T_UPLOAD
    tmpl[sel(K_BACKUP, 1)] = T_SMB
    sub[sel(K_BACKUP, 1)] = 2
    # DoS: http flood, https flood, syn flood (60 % from a packet tool), mixed http + syn
    tmpl[sel(K_DOS, 0)] = T_HTTP
    tmpl[sel(K_DOS, 1)] = T_HTTPS
    m = sel(K_DOS, 2)
    tmpl[m] = T_TCP_FAIL
    dport[m] = np.where(gu[gg[m], 0] < 0.6, 80, 443)
    tool[m] = np.where(gu[gg[m], 1] < 0.6, 1, 0)
    m = sel(K_DOS, 3)
    tmpl[m] = np.where(mu[m] < 0.5, T_HTTP, T_TCP_FAIL)
    dport[m] = 80
    # DDoS: udp flood, syn flood, http flood, dns flood
    tmpl[sel(K_DDOS, 0)] = A_UDP_FLOOD
    m = sel(K_DDOS, 1)
    tmpl[m] = T_TCP_FAIL
    dport[m] = np.where(gu[gg[m], 0] < 0.6, 80, 443)
    tool[m] = np.where(gu[gg[m], 1] < 0.6, 1, 0)
    tmpl[sel(K_DDOS, 2)] = T_HTTP
    tmpl[sel(K_DDOS, 3)] = T_DNS
    # Recon: syn scan (sequential or random ports, 60 % with nmap's signature), ping sweep, banner scan
    m = sel(K_RECON, 0)
    tmpl[m] = T_TCP_FAIL
    seq = (1 + np.floor(gu[gg[m], 0] * 2000) + pos[m]) % 65535 + 1
    rnd = rng.integers(1, 65536, int(m.sum()))
    dport[m] = np.where(gu[gg[m], 1] < 0.5, seq, rnd)
    tool[m] = np.where(gu[gg[m], 2] < 0.6, 2, 0)
    tmpl[sel(K_RECON, 1)] = T_PING
    m = sel(K_RECON, 2)
    tmpl[m] = T_TCP_SHORT
    dport[m] = _SCAN_PORTS[(np.floor(gu[gg[m], 0] * len(_SCAN_PORTS)).astype(np.int64) + pos[m]) % len(_SCAN_PORTS)]
    # Brute force: ssh, ftp, web login
    m = sel(K_BRUTE, 0)
    tmpl[m] = T_SSH
    sub[m] = 0
    tmpl[sel(K_BRUTE, 1)] = T_FTP
    m = sel(K_BRUTE, 2)
    tmpl[m] = np.where(gu[gg[m], 0] < 0.6, T_HTTPS, T_HTTP)
    # Theft: bulk exfiltration, beacons, dns tunnel, raw exfiltration
    tmpl[sel(K_THEFT, 0)] = T_UPLOAD
    tmpl[sel(K_THEFT, 1)] = T_HTTPS
    tmpl[sel(K_THEFT, 2)] = A_DNS_TUNNEL
    tmpl[sel(K_THEFT, 3)] = A_EXFIL_RAW
    assert (tmpl >= 0).all()

    # --- hosts
    cli, srv = _benign_hosts(h, tmpl, rng)  # defaults; groups override below
    if G:
        ext = h.external
        g_int = gu[:, 3] < np.select([g.kind == K_DOS, g.kind == K_RECON, g.kind == K_BRUTE, g.kind == K_THEFT],
                                     [0.5, 0.6, 0.3, 1.0], 0.7)
        g_att = np.where(g_int, h.clients[rng.integers(0, len(h.clients), G)], ext[rng.integers(0, len(ext), G)])
        g_att2 = np.where(g_int, h.clients[rng.integers(0, len(h.clients), G)], ext[rng.integers(0, len(ext), G)])
        role_of = {K_DOS: "web", K_DDOS: "web", K_RECON: "any", K_BRUTE: "ssh", K_THEFT: "web"}
        g_tgt = ext[rng.integers(0, len(ext), G)]
        for k, r in role_of.items():
            pool = _role(h, r)
            mk = g.kind == k
            g_tgt[mk] = pool[rng.integers(0, len(pool), int(mk.sum()))]
        for v_role in ((K_DDOS, 3, "dns"), (K_BRUTE, 1, "ftp"), (K_BRUTE, 2, "web")):
            mk = (g.kind == v_role[0]) & (g.variant == v_role[1])
            pool = _role(h, v_role[2])
            g_tgt[mk] = pool[rng.integers(0, len(pool), int(mk.sum()))]
        mk = g.kind == K_THEFT
        g_tgt[mk] = ext[rng.integers(0, len(ext), int(mk.sum()))]
        mk = g.kind == K_RECON
        g_tgt[mk] = rng.choice(np.concatenate([h.clients, h.servers]), int(mk.sum()))
        # benign bursts: same pair for web pages and backups; admin/monitor hosts fan out to servers
        mk = (g.kind == K_WEB) | (g.kind == K_BACKUP)
        g_att[mk] = h.clients[rng.integers(0, len(h.clients), int(mk.sum()))]
        mk = (g.kind == K_ANSIBLE) | (g.kind == K_MONITOR)
        g_att[mk] = np.where(g.kind[mk] == K_ANSIBLE, h.roles["admin"][0], h.roles["monitor"][0])

        mm = grouped
        # a second attacker host sends about a fifth of a campaign's flows
        attacker = np.where((mu < 0.5) & (rng.random(n) < 0.4), g_att2[gg], g_att[gg])
        cli[mm] = np.where(kind[mm] >= K_DOS, attacker[mm], g_att[gg[mm]])
        keep_srv = (kind == K_WEB) | (kind == K_BACKUP)  # these bursts keep the pair of their first flow
        first = starts[gg] + n_single
        srv[mm] = np.where(keep_srv[mm], srv[first[mm]], g_tgt[gg[mm]])
        m = (kind == K_ANSIBLE)
        srv[m] = h.roles["ssh"][rng.integers(0, len(h.roles["ssh"]), int(m.sum()))]
        m = kind == K_MONITOR
        srv[m] = h.servers[rng.integers(0, len(h.servers), int(m.sum()))]
        m = kind == K_DDOS  # many bots: 20-200 hosts per campaign
        nb = (20 + np.floor(gu[:, 2] * 180)).astype(np.int64)
        bot0 = rng.integers(0, len(ext), G)
        cli[m] = ext[(bot0[gg[m]] + rng.integers(0, nb[gg[m]])) % len(ext)]
        m = sel(K_RECON, 1)  # ping sweep over consecutive hosts
        pool = np.concatenate([h.clients, h.servers])
        srv[m] = pool[(np.floor(gu[gg[m], 0] * len(pool)).astype(np.int64) + pos[m]) % len(pool)]

    # --- latents: campaign members share a centre, every latent stays N(0, 1)
    z = rng.standard_normal((n, _NZ))
    if G:
        zc = rng.standard_normal((G, _NZ))
        rho = np.array([_RHO[k] for k in range(len(_RHO))])[kind]
        z = rho * zc[gg] + np.sqrt(1 - rho**2) * z
    f = _Flows(n, z, rng)
    f.dport[:] = dport
    f.sub[:] = sub
    f.hdr_in = h.hdr[cli]  # ping payload depends on the client's OS
    _render(f, tmpl, fam)
    cols = f.finalize(h, cli, srv, tool)
    cols["Label"] = (fam >= 0).astype(np.int64)
    cols["Attack"] = fam

    cols["_order"] = np.argsort(t, kind="stable")
    cols["_hosts_ip"] = h.ip
    return cols


def synthesize(n_flows: int = 60_000, seed: int = 0, attack_fraction: float = 0.3) -> pl.DataFrame:
    """The synthetic flows as a polars DataFrame with the :data:`NF_V2_COLUMNS`, in time order."""
    import polars as pl  # lazy: the params schema imports this module for its field lists

    cols = _simulate(n_flows, seed, attack_fraction)
    order = pl.Series("order", cols.pop("_order"))
    ips = pl.Series("ip", cols.pop("_hosts_ip"))
    names = pl.Series("name", [BENIGN, *ATTACK_FAMILIES])
    data = {}
    for c in NF_V2_COLUMNS:
        v = cols[c]
        if c in ("IPV4_SRC_ADDR", "IPV4_DST_ADDR"):
            data[c] = ips.gather(v)
        elif c == "Attack":
            data[c] = names.gather(v + 1)
        elif c in _FLOAT_COLUMNS:
            data[c] = pl.Series(c, v.astype(np.float64))
        else:
            data[c] = pl.Series(c, v.astype(np.int64))
    return pl.DataFrame({c: s.alias(c) for c, s in data.items()}).select(pl.all().gather(order))


def generate(out_dir: str | Path, n_flows: int = 60_000, seed: int = 0, n_files: int = 1,
             attack_fraction: float = 0.3) -> list[Path]:
    """Write synthetic NF-v2 flows as ``part-0000.csv`` ... in ``out_dir``.

    Rows are in time order and split into ``n_files`` consecutive chunks; every file
    has the header. The same arguments give byte-identical files. Each file is
    written under a temporary name and renamed; ``part-NNNN.csv`` files left in
    ``out_dir`` by an earlier run with more files are removed.

    Args:
        out_dir: Folder to write into (created if missing).
        n_flows: Total number of flows (rows).
        seed: Random seed.
        n_files: Number of CSV files.
        attack_fraction: Share of attack flows.

    Returns:
        The paths written, in time order.
    """
    if n_files < 1:
        raise ValueError(f"n_files must be >= 1, got {n_files}")
    df = synthesize(n_flows, seed, attack_fraction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, df.height, n_files + 1).round().astype(np.int64)
    paths = []
    for k in range(n_files):
        path = out / f"part-{k:04d}.csv"
        with store.atomic_path(path) as tmp:
            df.slice(int(bounds[k]), int(bounds[k + 1] - bounds[k])).write_csv(tmp)
        paths.append(path)
    for stale in sorted(set(out.glob("part-[0-9][0-9][0-9][0-9].csv")) - set(paths)):
        stale.unlink()
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m tasks.domains.netflow.synthetic OUT_DIR --n-flows N --seed S``."""
    ap = argparse.ArgumentParser(description="Write synthetic NetFlow v2 CSV files.")
    ap.add_argument("out_dir")
    ap.add_argument("--n-flows", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-files", type=int, default=1)
    ap.add_argument("--attack-fraction", type=float, default=0.3)
    a = ap.parse_args(argv)
    for p in generate(a.out_dir, a.n_flows, a.seed, a.n_files, a.attack_fraction):
        print(p)


if __name__ == "__main__":
    main()
