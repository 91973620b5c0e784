// Drives a real ingestd process with the @nftstorage/ipfs-cluster client
// (the exact version pinned in package.json), end to end. The binary is built
// from the repository root with `go build ./cmd/ingestd`, started on a free
// loopback port with a temporary data directory, polled on GET /health until
// it answers 204, and stopped with SIGTERM.
//
// Expectations come from the wire specification
// (shared/spec/cluster-rest-api.md) and from kubo: the CID of everything
// added is compared with what `ipfs add` gives for the same bytes and the
// options the client sends (CIDv1 with raw leaves unless told otherwise).
//
// Run: bash .ci/clients.sh (or `npm ci && node --test` here, with kubo built
// by `bash .ci/kubo.sh`).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { Cluster } from '@nftstorage/ipfs-cluster'

const run = promisify(execFile)
const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

// Hang guard for every wait on ingestd (startup, a pin settling, shutdown):
// these are local state changes a correct server makes in milliseconds; the
// guard only turns a hang into a failure showing the last state seen. It is
// not a performance bound. INGESTD_CLIENTS_SETTLE_MS overrides it.
const settleMs = Number(process.env.INGESTD_CLIENTS_SETTLE_MS || 30000)
const pollMs = 20

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingestd-clients-js-'))
let ingestdBin
let server // the ingestd most tests share
let peerId // its cluster peer ID

// ---------------------------------------------------------------------------
// kubo, the CID oracle

const kuboBin =
  process.env.INGESTD_IPFS_BIN || path.join(repoRoot, '.cache', 'bin', 'ipfs')
const kuboRepo = path.join(tmp, 'kubo')
let kuboReady

const requireKubo = () =>
  process.env.CI === 'true' ||
  !['', '0', 'false', 'f', 'FALSE', 'False'].includes(
    process.env.INGESTD_REQUIRE_KUBO ?? ''
  )

/**
 * Returns true if kubo can be used. Without it the test is skipped with
 * instructions, or fails when CI=true or INGESTD_REQUIRE_KUBO is set.
 * @param {import('node:test').TestContext} t
 */
const needKubo = async (t) => {
  if (!fs.existsSync(kuboBin)) {
    const msg = `kubo binary ${kuboBin} is not available (run \`bash .ci/kubo.sh\` or set INGESTD_IPFS_BIN)`
    if (requireKubo()) {
      throw new Error(`${msg}; CI=true or INGESTD_REQUIRE_KUBO is set, so this is a failure`)
    }
    t.skip(msg)
    return false
  }
  kuboReady ??= ipfs(['init', '--profile=test'])
  await kuboReady
  return true
}

// kubo commands without a daemon take the repository lock: one at a time.
let kuboQueue = Promise.resolve()
const ipfs = (args, cwd) => {
  const p = kuboQueue.then(async () => {
    const env = { ...process.env, IPFS_PATH: kuboRepo, IPFS_TELEMETRY: 'off', GOLOG_LOG_LEVEL: 'error' }
    try {
      const { stdout } = await run(kuboBin, args, { cwd, env, encoding: 'buffer', maxBuffer: 64 << 20 })
      return stdout
    } catch (err) {
      throw new Error(`kubo failed: ${err.message}`) // the message holds the command and its stderr
    }
  })
  kuboQueue = p.catch(() => {})
  return p
}

/**
 * Writes files (name → Uint8Array|string) to a fresh directory, runs `ipfs
 * add <flags> -- <names>` there and returns kubo's entries (root last).
 */
const kuboAdd = async (files, flags, names = Object.keys(files)) => {
  const dir = fs.mkdtempSync(path.join(tmp, 'kubo-add-'))
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), content)
  }
  const out = await ipfs(['add', '--progress=false', '--pin=false', ...flags, '--', ...names], dir)
  const entries = []
  for (const line of out.toString().split('\n')) {
    if (!line.trim()) continue
    const m = /^added (\S+) ?(.*)$/.exec(line)
    assert.ok(m, `unexpected \`ipfs add\` output line ${JSON.stringify(line)}`)
    entries.push({ cid: m[1], name: m[2] })
  }
  return entries
}

const kuboRoot = async (files, flags, names) => (await kuboAdd(files, flags, names)).at(-1).cid

// The cumulative DAG size, which AddedOutput.size reports (spec §4.4).
const kuboSize = async (cid) =>
  Number((await ipfs(['files', 'stat', '--format=<cumulsize>', `/ipfs/${cid}`])).toString().trim())

// The client adds with CIDv1 and raw leaves unless told otherwise.
const clientDefaults = ['--cid-version=1', '--raw-leaves']

// ---------------------------------------------------------------------------
// ingestd

const freePort = async () => {
  const srv = net.createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const { port } = srv.address()
  srv.close()
  await once(srv, 'close')
  return port
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls check() until it returns true; check may return a string describing
 * the state instead, which is shown if the hang guard fires.
 */
const eventually = async (what, check) => {
  const deadline = Date.now() + settleMs
  let last
  for (;;) {
    last = await check()
    if (last === true) return
    if (Date.now() > deadline) {
      throw new Error(`${what}: not reached within the ${settleMs} ms hang guard; last state: ${last}`)
    }
    await sleep(pollMs)
  }
}

const startIngestd = async (extraArgs = []) => {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(tmp, 'ingestd-'))
  const peername = `js-peer-${path.basename(dir)}`
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INGESTD_')))
  // --gateway off: several ingestd run at once and the gateway's default port (8080) is one.
  const args = ['--data', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`, '--peername', peername, '--gateway', 'off', ...extraArgs]
  const proc = spawn(ingestdBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout.on('data', (d) => { log += d })
  proc.stderr.on('data', (d) => { log += d })
  let exited = null
  const exit = once(proc, 'exit').then(([code, signal]) => { exited = { code, signal } })
  const url = `http://127.0.0.1:${port}/`
  try {
    await eventually('GET /health answers 204', async () => {
      if (exited) throw new Error(`ingestd exited (${JSON.stringify(exited)}) before answering /health`)
      try {
        const res = await fetch(`${url}health`)
        return res.status === 204 || `GET /health answered ${res.status}`
      } catch (err) {
        return String(err.cause ?? err)
      }
    })
  } catch (err) {
    proc.kill('SIGKILL')
    await exit
    throw new Error(`ingestd ${args.join(' ')}: ${err.message}\n--- ingestd log ---\n${log}`)
  }
  return {
    url,
    peername,
    log: () => log,
    /** SIGTERM, then wait for the process to exit. */
    stop: async () => {
      if (exited) throw new Error(`ingestd exited during the tests: ${JSON.stringify(exited)}\n${log}`)
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 2 * settleMs)
      await exit
      clearTimeout(timer)
      if (exited.signal === 'SIGKILL') throw new Error(`ingestd did not exit after SIGTERM\n${log}`)
    }
  }
}

before(async () => {
  const bin = path.join(tmp, 'ingestd')
  try {
    await run('go', ['build', '-o', bin, './cmd/ingestd'], { cwd: repoRoot, maxBuffer: 16 << 20 })
  } catch (err) {
    throw new Error(`cannot build ingestd in ${repoRoot}: ${err.message}`) // the message holds go's stderr
  }
  ingestdBin = bin
  server = await startIngestd()
  const cluster = new Cluster(server.url)
  peerId = (await cluster.info()).id
})

after(async () => {
  try {
    await server?.stop()
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})

const cluster = () => new Cluster(server.url)

/** A CIDv1 (raw, sha2-256) of random bytes: content ingestd never received. */
const missingCid = () => {
  const digest = createHash('sha256').update(randomBytes(64)).digest()
  const bytes = Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest])
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = 'b'
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

/** Deterministic pseudo-random bytes (the same on every run). */
const content = (seed, n) => {
  const out = Buffer.alloc(n)
  let block = Buffer.alloc(0)
  for (let i = 0, off = 0; off < n; i++) {
    block = createHash('sha256').update(`${seed}/${i}`).digest()
    off += block.copy(out, off)
  }
  return out
}

/** This peer's entry of a status; fails if there is none. */
const mine = (status) => {
  assert.ok(status.peerMap && status.peerMap[peerId], `status of ${status.cid} has no entry for ${peerId}: ${JSON.stringify(status.peerMap)}`)
  return status.peerMap[peerId]
}

/** Polls status(cid) until it is no longer queued or in progress. */
const settled = async (c, cid) => {
  let last
  await eventually(`status of ${cid} settles`, async () => {
    last = mine(await c.status(cid))
    return !['pin_queued', 'pinning', 'unpin_queued', 'unpinning'].includes(last.status) || last.status
  })
  return last
}

const rejectsWithStatus = (promise, status, what) =>
  assert.rejects(promise, (err) => {
    assert.equal(err.response?.status, status, `${what}: ${err.message}`)
    return true
  })

// ---------------------------------------------------------------------------

test('version is 1.1.6', async () => {
  assert.equal(await cluster().version(), '1.1.6')
})

test('info describes the peer', async () => {
  const info = await cluster().info() // throws if error or ipfs.error is set
  assert.equal(typeof info.id, 'string')
  assert.equal(info.peerName, server.peername)
  assert.equal(info.version, '1.1.6')
  // The whole peerset including self (spec §5.2); ingestd is the only peer.
  assert.deepEqual(info.clusterPeers, [info.id])
})

test('peerList lists this one peer', async () => {
  const peers = await cluster().peerList()
  assert.equal(peers.length, 1)
  assert.equal(peers[0].id, peerId)
  assert.equal(peers[0].peerName, server.peername)
})

test('add gives the CID kubo gives, and the content is pinned at once', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const bytes = Buffer.from('hello world\n')
  const want = await kuboRoot({ 'hello.txt': bytes }, clientDefaults)

  const res = await c.add(new File([bytes], 'hello.txt'))
  assert.equal(res.cid, want)
  assert.equal(res.name, 'hello.txt')
  assert.equal(res.size, await kuboSize(want))

  // In the embedded mode an add's blocks are stored before it returns.
  assert.equal(mine(await c.status(res.cid)).status, 'pinned')
  const pin = await c.allocation(res.cid)
  assert.equal(pin.cid, want)
  assert.equal(pin.type, 'pin')
})

test('add with CIDv0, and with streamed output, match kubo', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const big = content('js-big', 700 << 10)

  const v0 = await c.add(new File([big], 'big.bin'), { cidVersion: 0, rawLeaves: false })
  assert.equal(v0.cid, await kuboRoot({ 'big.bin': big }, []))

  const streamed = await c.add(new File([big], 'big.bin'), { streamChannels: true })
  assert.equal(streamed.cid, await kuboRoot({ 'big.bin': big }, clientDefaults))
  assert.equal(streamed.name, 'big.bin')
})

test('add records the pin options', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const bytes = content('js-options', 3000)
  const res = await c.add(new File([bytes], 'report.pdf'), {
    name: 'quarterly report ü',
    metadata: { owner: 'alice & bob' }
  })
  assert.equal(res.cid, await kuboRoot({ 'report.pdf': bytes }, clientDefaults))
  const pin = await c.allocation(res.cid)
  assert.equal(pin.name, 'quarterly report ü')
  assert.deepEqual(pin.metadata, { owner: 'alice & bob' })
})

test('addDirectory wraps the files as kubo -w does', async (t) => {
  if (!(await needKubo(t))) return
  const files = { 'a.txt': 'aaa\n', 'b.txt': content('js-dir-b', 1000) }
  const want = await kuboAdd(files, ['--wrap-with-directory', ...clientDefaults])
  const res = await cluster().addDirectory(Object.entries(files).map(([n, b]) => new File([b], n)))
  // A buffered add answers one JSON array; the root (the wrapper) is last.
  assert.ok(Array.isArray(res))
  assert.equal(res.at(-1).cid, want.at(-1).cid)
  assert.equal(res.at(-1).name, '')
  const got = Object.fromEntries(res.map((o) => [o.name, o.cid]))
  assert.deepEqual(got, Object.fromEntries(want.map((e) => [e.name, e.cid])))
})

test('addCAR imports what kubo exported', async (t) => {
  if (!(await needKubo(t))) return
  const bytes = content('js-car', 600 << 10)
  const root = await kuboRoot({ 'data.bin': bytes }, ['--cid-version=1'])
  const car = await ipfs(['dag', 'export', '--progress=false', root])
  const res = await cluster().addCAR(new File([car], 'data.car'))
  assert.equal(res.cid, root)
  assert.equal(mine(await cluster().status(root)).status, 'pinned')
})

test('pin, then status shows this peer pinned, and allocation shows the options', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  // The wrapper gets pinned; the files inside are stored but not pinned.
  const files = { 'photo.jpg': content('js-pin-photo', 5000), 'notes.txt': 'trip notes\n' }
  const entries = await kuboAdd(files, ['--wrap-with-directory', ...clientDefaults])
  const cidOf = Object.fromEntries(entries.map((e) => [e.name, e.cid]))
  await c.addDirectory(Object.entries(files).map(([n, b]) => new File([b], n)))

  const expireAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 48 * 3600 * 1000)
  const pin = await c.pin(cidOf['photo.jpg'], {
    name: 'holiday photo',
    metadata: { album: 'summer' },
    replicationFactorMin: -1,
    replicationFactorMax: -1,
    expireAt
  })
  assert.equal(pin.cid, cidOf['photo.jpg'])
  assert.equal(pin.type, 'pin')
  assert.equal(pin.name, 'holiday photo')
  assert.deepEqual(pin.metadata, { album: 'summer' })
  assert.equal(pin.expireAt.getTime(), expireAt.getTime())
  assert.deepEqual(pin.allocations, []) // -1/-1 is "everywhere" (spec §5.4)

  let last
  await eventually('photo pinned', async () => {
    last = mine(await c.status(pin.cid))
    return last.status === 'pinned' || last.status
  })
  assert.equal(last.peerName, server.peername)

  const alloc = await c.allocation(pin.cid)
  assert.equal(alloc.name, 'holiday photo')
  assert.deepEqual(alloc.metadata, { album: 'summer' })

  // An IPFS path is pinned through the path route, resolved to the file.
  const byPath = await c.pin(`/ipfs/${entries.at(-1).cid}/notes.txt`, { name: 'notes' })
  assert.equal(byPath.cid, cidOf['notes.txt'])
})

test('unpin, then allocation fails with 404', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const bytes = content('js-unpin', 2000)
  const { cid } = await c.add(new File([bytes], 'old.log'), { name: 'old logs' })
  assert.equal(cid, await kuboRoot({ 'old.log': bytes }, clientDefaults))

  const removed = await c.unpin(cid)
  assert.equal(removed.cid, cid)
  assert.equal(removed.name, 'old logs') // the pin as it was (spec §2)
  await rejectsWithStatus(c.allocation(cid), 404, 'allocation after unpin')
  await rejectsWithStatus(c.unpin(cid), 404, 'second unpin')
  await eventually('status unpinned', async () => {
    const st = mine(await c.status(cid)).status
    return st === 'unpinned' || st
  })
})

test('status, local or not, and of an unknown CID', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const { cid } = await c.add(new File([content('js-status', 1500)], 's.bin'))
  for (const local of [undefined, false, true]) {
    const st = await c.status(cid, { local })
    assert.equal(st.cid, cid)
    assert.deepEqual(Object.keys(st.peerMap), [peerId])
    assert.equal(mine(st).status, 'pinned')
    assert.equal(mine(st).peerName, server.peername)
  }
  // Not in the pinset: 200 with every peer "unpinned" (spec §2).
  assert.equal(mine(await c.status(missingCid())).status, 'unpinned')
})

test('statusAll, with filters, cids and local', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const a = (await c.add(new File([content('js-all-a', 1000)], 'a.bin'))).cid
  const b = (await c.add(new File([content('js-all-b', 1000)], 'b.bin'))).cid

  const all = await c.statusAll()
  const allCids = all.map((s) => s.cid)
  assert.ok(allCids.includes(a) && allCids.includes(b), `statusAll() = ${allCids}`)

  for (const s of await c.statusAll({ filter: 'pinned' })) {
    assert.equal(mine(s).status, 'pinned', `${s.cid} passed the pinned filter`)
  }
  const two = await c.statusAll({ cids: [a, b] })
  assert.deepEqual(two.map((s) => s.cid).sort(), [a, b].sort())
  for (const s of two) assert.equal(mine(s).status, 'pinned')

  for (const s of await c.statusAll({ local: true })) {
    assert.deepEqual(Object.keys(s.peerMap), [peerId])
  }
})

test('allocation of added content, and 404 for an unknown CID', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const bytes = content('js-alloc', 1200)
  const { cid } = await c.add(new File([bytes], 'x.bin'))
  const pin = await c.allocation(cid)
  assert.equal(pin.cid, await kuboRoot({ 'x.bin': bytes }, clientDefaults))
  assert.equal(pin.type, 'pin')
  assert.equal(pin.mode, 'recursive')
  assert.equal(pin.maxDepth, -1)
  await rejectsWithStatus(c.allocation(missingCid()), 404, 'allocation of an unknown CID')
})

test('recover pins what failed once the content is there', async (t) => {
  if (!(await needKubo(t))) return
  const c = cluster()
  const bytes = content('js-late', 4000)
  const late = await kuboRoot({ 'late.bin': bytes }, clientDefaults)

  // Pinned before its blocks exist: pin_error with a reason, never pinned.
  await c.pin(late, { name: 'late' })
  const failed = await settled(c, late)
  assert.equal(failed.status, 'pin_error')
  assert.ok(failed.error, 'pin_error without a reason')

  // The blocks arrive inside a wrapped directory (only the wrapper is
  // pinned); recover then pins the file.
  await c.addDirectory([new File([bytes], 'late.bin')])
  const recovered = await c.recover(late)
  assert.equal(recovered.cid, late)
  await eventually('late pinned after recover', async () => {
    const st = mine(await c.status(late)).status
    return st === 'pinned' || st
  })
  // Nothing to do for a pinned item: its status comes back.
  assert.equal(mine(await c.recover(late)).status, 'pinned')
  assert.equal(mine(await c.recover(late, { local: true })).status, 'pinned')
})

test('metricNames lists metric names', async () => {
  const names = await cluster().metricNames()
  assert.ok(Array.isArray(names) && names.length > 0, `metricNames() = ${JSON.stringify(names)}`)
  for (const n of names) assert.equal(typeof n, 'string')
})

test('basic auth: right password works, a wrong one gets 401', async (t) => {
  const s = await startIngestd(['--basic-auth', 'alice:secret'])
  t.after(() => s.stop())
  const basic = (user, pass) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` })

  const good = new Cluster(s.url, { headers: basic('alice', 'secret') })
  assert.equal(await good.version(), '1.1.6')
  assert.equal((await good.peerList()).length, 1)

  const bad = new Cluster(s.url, { headers: basic('alice', 'wrong') })
  await rejectsWithStatus(bad.version(), 401, 'version with a wrong password')
  await rejectsWithStatus(bad.info(), 401, 'info with a wrong password')
  await rejectsWithStatus(bad.add(new File(['x'], 'x.txt')), 401, 'add with a wrong password')
  await rejectsWithStatus(bad.pin(missingCid()), 401, 'pin with a wrong password')
  await rejectsWithStatus(bad.statusAll(), 401, 'statusAll with a wrong password')
  await rejectsWithStatus(new Cluster(s.url).version(), 401, 'version without credentials')
})
