// js-libp2p probe of a leafnet node: dial, identify, ping, Kademlia FIND_NODE and GET_PROVIDERS on
// leafnet's own Kademlia protocol id.
//
//   node probe.mjs <multiaddr with /p2p/> <provider key name> [kad protocol]
//
// Prints one JSON line on stdout:
//   {"peer_id", "agent", "protocol_version", "protocols", "listen_addrs",
//    "ping_ms", "ping_rtt_ms", "closest_peers", "closest_peers_query", "providers", "elapsed_ms"}
// - ping_ms: wall time of one ping through the js ping service (`/ipfs/ping/1.0.0`: opening the
//   stream, then 32 bytes there and back), to the microsecond; ping_rtt_ms is the service's own
//   figure for the echo alone, in whole milliseconds, so it can be 0 on loopback
// - closest_peers: the peers in the node's reply to a hand-built FIND_NODE for the raw key bytes
// - closest_peers_query: the peers that answered js kad-dht's own getClosestPeers (an iterative
//   lookup, FIND_NODE with the same raw key) started from the node; js follows a returned peer
//   only if it is closer to the key than the peer that returned it
// - providers: [{id, addrs}] in the node's reply to a hand-built GET_PROVIDERS for the raw key
//   bytes `/leafnet/dht/<name>` (js kad-dht's findProviders only takes a CID, whose multihash
//   cannot spell such a key, so the message is built here: length-prefixed protobuf, as on the
//   Kademlia wire)
// Exits 1 with a message on stderr on any failure; everything is bounded (30 s in all).

// js-libp2p 3 uses Promise.withResolvers (Node.js >= 22); Node.js 20 lacks it.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const started = performance.now()
const TOTAL_MS = 30_000

function fail (msg) {
  process.stderr.write(`probe: ${msg}\n`)
  process.exit(1)
}

const hardStop = setTimeout(() => fail(`gave up after ${TOTAL_MS / 1000} s in all`), TOTAL_MS)

const [addrArg, nameArg, protoArg] = process.argv.slice(2)
if (addrArg == null || nameArg == null) {
  fail('usage: node probe.mjs <multiaddr with /p2p/> <provider key name> [kad protocol]')
}
const KAD_PROTOCOL = protoArg ?? '/leafnet/local/kad/1.0.0'
const KEY = new TextEncoder().encode(`/leafnet/dht/${nameArg}`)

const [{ createLibp2p }, { tcp }, { noise }, { yamux }, { identify }, { ping }, { kadDHT, passthroughMapper }, { multiaddr }] =
  await Promise.all([
    import('libp2p'),
    import('@libp2p/tcp'),
    import('@chainsafe/libp2p-noise'),
    import('@chainsafe/libp2p-yamux'),
    import('@libp2p/identify'),
    import('@libp2p/ping'),
    import('@libp2p/kad-dht'),
    import('@multiformats/multiaddr')
  ]).catch(err => fail(`cannot load js-libp2p (run npm ci in tests/interop): ${err.message}`))

/** Runs `fn(signal)`, failing the probe with `what` if it takes longer than `ms`. */
async function step (what, ms, fn) {
  const signal = AbortSignal.timeout(ms)
  try {
    return await Promise.race([
      fn(signal),
      new Promise((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error(`timed out after ${ms} ms`)), { once: true })
      })
    ])
  } catch (err) {
    fail(`${what} failed: ${err?.message ?? err}`)
  }
}

// --- protobuf and framing of the Kademlia wire protocol (libp2p kad-dht spec, dht.proto) ---

const MessageType = { GET_PROVIDERS: 3, FIND_NODE: 4 }

function varint (n) {
  const out = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Uint8Array.from(out)
}

function concat (parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Message { type = 1 (enum); key = 2 (bytes) }, prefixed with its length as an unsigned varint. */
function encodeRequest (type, key) {
  const body = concat([Uint8Array.of(0x08), varint(type), Uint8Array.of(0x12), varint(key.length), key])
  return concat([varint(body.length), body])
}

/** Reads a varint at `pos`: [value, next position]. */
function readVarint (buf, pos) {
  let value = 0
  let scale = 1
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint')
    const b = buf[pos++]
    value += (b & 0x7f) * scale
    if ((b & 0x80) === 0) return [value, pos]
    scale *= 128
    if (scale > 2 ** 49) throw new Error('varint too long')
  }
}

/** The fields of a protobuf message: [[field number, wire type, value]]. */
function fields (buf) {
  const out = []
  let pos = 0
  while (pos < buf.length) {
    let tag, v
    ;[tag, pos] = readVarint(buf, pos)
    const [field, wire] = [Math.floor(tag / 8), tag & 7]
    if (wire === 0) {
      ;[v, pos] = readVarint(buf, pos)
    } else if (wire === 2) {
      let len
      ;[len, pos] = readVarint(buf, pos)
      if (pos + len > buf.length) throw new Error('truncated field')
      v = buf.subarray(pos, pos + len)
      pos += len
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4
    } else {
      throw new Error(`unsupported wire type ${wire}`)
    }
    out.push([field, wire, v])
  }
  return out
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
function base58 (bytes) {
  let n = 0n
  for (const b of bytes) n = n * 256n + BigInt(b)
  let s = ''
  while (n > 0n) { s = B58[Number(n % 58n)] + s; n /= 58n }
  for (const b of bytes) { if (b !== 0) break; s = '1' + s }
  return s
}

/** Message.Peer { id = 1 (bytes); addrs = 2 (repeated bytes); connection = 3 }. */
function decodePeer (buf) {
  const peer = { id: '', addrs: [] }
  for (const [field, wire, v] of fields(buf)) {
    if (field === 1 && wire === 2) peer.id = base58(v)
    if (field === 2 && wire === 2) {
      try { peer.addrs.push(multiaddr(v).toString()) } catch { peer.addrs.push(`<undecodable ${v.length} bytes>`) }
    }
  }
  return peer
}

/** Message { type = 1; key = 2; closerPeers = 8; providerPeers = 9; … }. */
function decodeResponse (buf) {
  const msg = { type: 0, key: new Uint8Array(), closer: [], providers: [] }
  for (const [field, wire, v] of fields(buf)) {
    if (field === 1 && wire === 0) msg.type = v
    if (field === 2 && wire === 2) msg.key = v
    if (field === 8 && wire === 2) msg.closer.push(decodePeer(v))
    if (field === 9 && wire === 2) msg.providers.push(decodePeer(v))
  }
  return msg
}

/** Opens a stream on the Kademlia protocol, sends one request and reads the one reply. */
async function kadRequest (node, ma, type, key, signal) {
  const stream = await node.dialProtocol(ma, KAD_PROTOCOL, { signal })
  try {
    stream.send(encodeRequest(type, key))
    let buf = new Uint8Array()
    for await (const chunk of stream) {
      buf = concat([buf, chunk instanceof Uint8Array ? chunk : chunk.subarray()])
      if (buf.length === 0) continue
      const [len, pos] = readVarint(buf, 0)
      if (len > 64 * 1024) throw new Error(`reply of ${len} bytes is too large`)
      if (buf.length >= pos + len) {
        const msg = decodeResponse(buf.subarray(pos, pos + len))
        if (msg.type !== type) throw new Error(`reply has type ${msg.type}, asked ${type}`)
        // rust-libp2p leaves the key out of its replies (go and js echo it): check it when present
        if (msg.key.length > 0 && Buffer.compare(msg.key, key) !== 0) throw new Error('reply is for another key')
        return msg
      }
    }
    throw new Error(`stream ended after ${buf.length} bytes without a whole reply`)
  } catch (err) {
    if (err?.message?.startsWith('truncated')) throw new Error('stream ended inside a reply')
    throw err
  } finally {
    stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => stream.abort(new Error('closing')))
  }
}

// --- the probe ---

let ma
try {
  ma = multiaddr(addrArg)
} catch (err) {
  fail(`bad multiaddr ${addrArg}: ${err.message}`)
}
const target = ma.getComponents().findLast(c => c.name === 'p2p')?.value
if (target == null) fail(`${addrArg} has no /p2p/ peer id`)

const node = await step('starting js-libp2p', 5000, () => createLibp2p({
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    // identify runs once, explicitly, below (it feeds the peer store and so kad-dht's routing
    // table all the same); running it on connection open too races for its one outbound stream
    identify: identify({ runOnConnectionOpen: false }),
    ping: ping(),
    dht: kadDHT({
      protocol: KAD_PROTOCOL,
      clientMode: true,
      // the default drops private (here: loopback) addresses
      peerInfoMapper: passthroughMapper
    })
  }
}))

const conn = await step(`dialling ${addrArg}`, 10_000, signal => node.dial(ma, { signal }))

// Ping before identify: identify tells kad-dht that the node speaks Kademlia, and kad-dht then
// pings it before adding it to its routing table. A rust-libp2p node keeps one inbound ping
// stream per connection and drops the older one when another opens, so two concurrent pings
// from here would make one of them fail.
const pingStart = performance.now()
const rtt = await step('ping', 5000, signal => node.services.ping.ping(ma, { signal }))
const pingMs = performance.now() - pingStart

const id = await step('identify', 5000, signal => node.services.identify.identify(conn, { signal }))
if (id.peerId.toString() !== target) fail(`identify says peer ${id.peerId}, dialled ${target}`)

const findNode = await step('FIND_NODE', 5000, signal => kadRequest(node, ma, MessageType.FIND_NODE, KEY, signal))
const getProviders = await step('GET_PROVIDERS', 5000, signal => kadRequest(node, ma, MessageType.GET_PROVIDERS, KEY, signal))

const queried = await step('kad-dht getClosestPeers', 8000, async signal => {
  const peers = new Set()
  for await (const ev of node.services.dht.getClosestPeers(KEY, { signal })) {
    if (ev.name === 'FINAL_PEER') peers.add(ev.peer.id.toString())
  }
  return [...peers]
})

await step('stopping js-libp2p', 3000, () => node.stop())
clearTimeout(hardStop)

process.stdout.write(JSON.stringify({
  peer_id: id.peerId.toString(),
  agent: id.agentVersion ?? null,
  protocol_version: id.protocolVersion ?? null,
  protocols: id.protocols,
  listen_addrs: id.listenAddrs.map(a => a.toString()),
  ping_ms: Math.round(pingMs * 1000) / 1000,
  ping_rtt_ms: rtt,
  closest_peers: findNode.closer.map(p => p.id),
  closest_peers_query: queried,
  providers: getProviders.providers,
  elapsed_ms: Math.round(performance.now() - started)
}) + '\n')
process.exit(0)
