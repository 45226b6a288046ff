// Service networking across hosts (issue 5), on real hosts made of network namespaces: a private
// LAN (a bridge in a namespace of its own, connected to nothing else) and three hosts on it, a
// manager (`yun up`) on h1 and agents on h2 and h3, each in its own namespace. Every command that
// targets a host address runs inside one of these namespaces.
// (busybox 1.35's `wget -T` segfaults: timeouts use the `timeout` applet instead.) Real runc containers on a real
// overlay network (bridges, veths, VXLAN), real DNS, the routing mesh, the mTLS tunnel.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireOrSkip } from './helpers/cloud.js';
import { removeAgentDir, waitFor } from './helpers/agents.js';
import { createLan, lanSupport, type TestHost, type TestLan } from './helpers/netns.js';

const root = process.getuid?.() === 0;
const runc = (() => { try { execFileSync('runc', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
const busybox = existsSync('/bin/busybox');
const YUN = join(process.cwd(), 'bin', 'yun.js');

interface Task { id: string; name: string; node_id: string; status: { state: string; message: string; error: string | null }; networks?: { id: string; address: string }[] }

describe('overlay networks, VIPs and the routing mesh across three hosts (network namespaces)', { concurrency: false }, () => {
  let lan: TestLan;
  let ok = false;
  let why = '';
  let env: NodeJS.ProcessEnv = {};
  const dirs: string[] = [];
  const taskIds = new Set<string>();
  let h1: TestHost, h2: TestHost, h3: TestHost;

  /** `yun ARGS` run on a host (inside its namespace), as the admin. */
  const yun = async (h: TestHost, args: string[], timeoutMs = 60_000) => {
    const r = await h.exec([process.execPath, YUN, ...args], { env: { ...process.env, ...env, NO_COLOR: '1' }, timeoutMs });
    return r;
  };
  const yunOk = async (h: TestHost, args: string[], timeoutMs?: number) => {
    const r = await yun(h, args, timeoutMs);
    assert.equal(r.code, 0, `yun ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const yunJson = async <T>(h: TestHost, args: string[]) => JSON.parse(await yunOk(h, [...args, '--json'])) as T;
  const tasksOf = async (svc: string) => {
    const ts = (await yunJson<Task[]>(h1, ['service', 'ps', svc])).filter((t) => t.status.state === 'running');
    for (const t of ts) taskIds.add(t.id);
    return ts;
  };
  const running = (svc: string, n: number) => waitFor(`${n} running tasks of ${svc}`, async () => { const ts = await tasksOf(svc); return ts.length === n ? ts : undefined; }, 60_000)
    .catch(async (e) => { throw new Error(`${(e as Error).message}\n${JSON.stringify(await yunJson(h1, ['service', 'ps', svc]), null, 1)}`); });
  /** An HTTP GET from inside a host (node's fetch: the host's static busybox wget cannot resolve). */
  const httpGet = async (h: TestHost, url: string, timeoutMs = 3000) => h.exec([process.execPath, '-e',
    `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) }).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1); }, (e) => { console.error(String(e.cause ?? e)); process.exit(1); })`], { timeoutMs: timeoutMs + 5000 });
  const exec = async (task: string, command: string[], timeoutMs = 60_000) => yun(h1, ['task', 'exec', '--timeout', `${Math.ceil(timeoutMs / 1000)}s`, task, '--', ...command], timeoutMs + 10_000);

  before(async () => {
    const lanOk = await lanSupport();
    ok = root && runc && busybox && lanOk.ok;
    why = `needs root, runc, busybox-static and network namespaces (root=${root}, runc=${runc}, busybox=${busybox}${lanOk.ok ? '' : `, ${lanOk.reason}`})`;
    if (!ok) {
      if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
      return;
    }
    execFileSync(process.execPath, ['scripts/build-busybox-image.mjs', '--no-import'], { stdio: 'pipe' });
    lan = await createLan(3);
    [h1, h2, h3] = lan.hosts as [TestHost, TestHost, TestHost];
    const d1 = mkdtempSync(join(tmpdir(), 'yun-mh-m-'));
    dirs.push(d1);
    const up = h1.spawn([process.execPath, YUN, 'up', '--data-dir', d1, '--listen', `${h1.address}:7443`, '--advertise-addr', h1.address, '--log-level', 'warn']);
    await waitFor('manager up', async () => existsSync(join(d1, 'admin.env')) && /https:\/\//.test(up.output()), 30_000).catch((e) => { throw new Error(`${(e as Error).message}\n${up.output()}`); });
    for (const line of readFileSync(join(d1, 'admin.env'), 'utf8').split('\n')) {
      const m = /^export (\w+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    const token = (await yunOk(h1, ['join-token', 'worker', '-q'])).trim();
    for (const h of [h2, h3]) {
      const d = mkdtempSync(join(tmpdir(), `yun-mh-${h.name}-`));
      dirs.push(d);
      h.spawn([process.execPath, YUN, 'agent', '--join', `https://${h1.address}:7443`, '--token', token, '--advertise-addr', h.address, '--data-dir', d, '--log-level', 'warn'], { env: { ...process.env, YUN_CACERT: env.YUN_CACERT } });
    }
    await waitFor('3 ready nodes', async () => {
      const nodes = await yunJson<{ status: string }[]>(h1, ['node', 'ls']);
      return nodes.length === 3 && nodes.every((n) => n.status === 'ready');
    }, 60_000);
    await yunOk(h1, ['image', 'import-rootfs', 'build/busybox-rootfs', '--name', 'busybox:latest', '--cmd', 'sh'], 120_000);
  });

  after(async () => {
    if (!lan) return;
    try {
      const svcs = await yunJson<{ id: string }[]>(h1, ['service', 'ls']).catch(() => []);
      for (const s of svcs) await yun(h1, ['service', 'rm', s.id]);
      const gone = (id: string) => { try { execFileSync('runc', ['--root', '/run/yunstack-runc', 'state', id], { stdio: 'ignore' }); return false; } catch { return true; } };
      await waitFor('all containers gone', async () => [...taskIds].every(gone), 30_000).catch(() => undefined);
    } finally {
      await lan.cleanup();
      for (const id of taskIds) {
        try { execFileSync('runc', ['--root', '/run/yunstack-runc', 'delete', '-f', id], { stdio: 'ignore' }); } catch { /* gone already */ }
      }
      for (const d of dirs) await removeAgentDir(d);
    }
  });

  let vip = '';
  let nginx: Task[] = [];
  let client: Task;

  it('the seed session, fixed: mynginx on two hosts, a client on mynet1 on the third; the name resolves to the VIP, 20 requests reach both backends', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(h1, ['network', 'create', '-d', 'overlay', 'mynet1']);
    const page = 'echo "served by $(hostname) on node $YUN_NODE_ADDRESS" > /www/index.html && exec httpd -f -p 80 -h /www';
    await yunOk(h1, ['service', 'create', '--name', 'mynginx', '--replicas', '2', '--network', 'mynet1', '--image', 'busybox', '--constraint', 'node.role==worker',
      '--max-replicas-per-node', '1', '--publish', '8091:80', '--restart-delay', '20s', '--shell', '--', page]);
    await yunOk(h1, ['service', 'create', '--name', 'client', '--network', 'mynet1', '--image', 'busybox', '--constraint', 'node.role==manager', '--', 'sleep', '100000']);
    nginx = await running('mynginx', 2);
    // Each node says which data path it uses and why, and that it can build overlay networks.
    const node = JSON.parse(await yunOk(h1, ['node', 'inspect', nginx[0]!.node_id])) as { dataplane: { path: string; why: string; overlay: { available: boolean } }; missing_features: Record<string, string> };
    assert.match(node.dataplane.path, /nftables|portable/, JSON.stringify(node.dataplane));
    assert.ok(node.dataplane.why.length > 20);
    assert.equal(node.dataplane.overlay.available, true, JSON.stringify(node.dataplane));
    assert.equal(node.missing_features.overlay, undefined, JSON.stringify(node.missing_features));
    assert.notEqual(nginx[0]!.node_id, nginx[1]!.node_id, 'the two backends run on different hosts');
    client = (await running('client', 1))[0]!;
    const net = JSON.parse(await yunOk(h1, ['network', 'inspect', 'mynet1'])) as { subnet: string; services: { name: string; vip: string }[] };
    vip = net.services.find((s) => s.name === 'mynginx')!.vip;
    assert.ok(vip, JSON.stringify(net));

    const ns = await exec(client.id, ['nslookup', 'mynginx']);
    assert.equal(ns.code, 0, ns.stdout + ns.stderr);
    assert.match(ns.stdout, new RegExp(`Address(?: \\d+)?:\\s+${vip.replace(/\./g, '\\.')}\\b`), ns.stdout);

    const addrs = nginx.map((x) => x.networks?.[0]?.address);
    assert.ok(addrs.every(Boolean), JSON.stringify(nginx));
    const tasksNs = await exec(client.id, ['nslookup', 'tasks.mynginx']);
    for (const a of addrs) assert.match(tasksNs.stdout, new RegExp(`\\b${a!.replace(/\./g, '\\.')}\\b`), tasksNs.stdout);

    const r = await exec(client.id, ['sh', '-c', 'for i in $(seq 20); do timeout 3 wget -q -O- http://mynginx/ || echo FAILED; done']);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 20, r.stdout + r.stderr);
    assert.ok(!lines.includes('FAILED'), r.stdout);
    const served = new Set(lines.map((l) => /on node (\S+)/.exec(l)?.[1]));
    assert.deepEqual([...served].sort(), [h2.address, h3.address].sort(), r.stdout);

    // Task to task, across hosts, by address (VXLAN).
    const direct = await exec(client.id, ['timeout', '3', 'wget', '-q', '-O-', `http://${addrs[0]}/`]);
    assert.equal(direct.code, 0, direct.stdout + direct.stderr);
  });

  it('routing mesh: port 8091 answers on all three hosts, also the one without a backend', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    for (const target of [h1, h2, h3]) {
      for (const from of [h1, h2, h3]) {
        const r = await httpGet(from, `http://${target.address}:8091/`);
        assert.equal(r.code, 0, `from ${from.name} to ${target.name}:8091: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /served by/);
      }
    }
  });

  it('a stopped backend is gone from DNS and the VIP within 2 s, and no request fails', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const victim = nginx[0]!;
    const kill = await exec(victim.id, ['sh', '-c', 'kill $(pidof httpd)']);
    assert.equal(kill.code, 0, kill.stdout + kill.stderr);
    await new Promise((r) => setTimeout(r, 2000));
    const r = await exec(client.id, ['sh', '-c', 'for i in $(seq 20); do timeout 3 wget -q -O- http://mynginx/ || echo FAILED; done']);
    assert.ok(!r.stdout.includes('FAILED'), r.stdout);
    assert.equal(r.stdout.trim().split('\n').length, 20, r.stdout);
    const tasksNs = await exec(client.id, ['nslookup', 'tasks.mynginx']);
    assert.doesNotMatch(tasksNs.stdout, new RegExp(`\\b${victim.networks![0]!.address.replace(/\./g, '\\.')}\\b`), tasksNs.stdout);
    assert.match(tasksNs.stdout, new RegExp(`\\b${nginx[1]!.networks![0]!.address.replace(/\./g, '\\.')}\\b`), tasksNs.stdout);
    // The replacement (after the 20 s restart delay) is not waited for: the next test uses what runs.
  });

  it('a blocked data-plane port: yun doctor names the pair and the port; the mesh still answers or fails fast', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    nginx = await running('mynginx', 2); // the stopped one is back (after its restart delay)
    const undo = await lan.blockTcp(h1, h3, 7444);
    try {
      const d = await yun(h1, ['doctor']);
      assert.notEqual(d.code, 0, d.stdout);
      assert.match(d.stdout, /data path/, d.stdout);
      assert.match(d.stdout, /overlay networks/, d.stdout);
      assert.match(d.stdout + d.stderr, new RegExp(`${h1.address.replace(/\./g, '\\.')} → ${h3.address.replace(/\./g, '\\.')}:7444`), d.stdout);
      for (let i = 0; i < 10; i++) {
        const t0 = Date.now();
        const r = await httpGet(h1, `http://${h1.address}:8091/`, 5000);
        const ms = Date.now() - t0;
        assert.equal(r.code, 0, `request ${i} failed after ${ms} ms: ${r.stderr}`);
        assert.ok(ms < 1500, `request ${i} took ${ms} ms`);
      }
    } finally {
      await undo();
    }
  });

  it('a backend\'s node dies: the mesh (kernel DNAT to other nodes) loses no request, none waits 1.5 s', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    nginx = await running('mynginx', 2);
    // h1 runs no backend: its published port is DNATed to both, on h2 and h3.
    const self = (await yunJson<{ id: string; address: string }[]>(h1, ['node', 'ls'])).find((n) => n.address === h1.address)!;
    const node = JSON.parse(await yunOk(h1, ['node', 'inspect', self.id])) as { dataplane: { fast_path: string; fast_path_remote: string } };
    assert.equal(node.dataplane.fast_path_remote, 'on', JSON.stringify(node.dataplane));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(/on node (\S+)/.exec((await httpGet(h1, `http://${h1.address}:8091/`)).stdout)?.[1] ?? '?');
    assert.deepEqual([...seen].sort(), [h2.address, h3.address].sort());
    // …in the kernel: h1's table DNATs port 8091 to both and masquerades what goes to them.
    const rules = (await h1.exec(['nft', 'list', 'ruleset'])).stdout;
    assert.match(rules, /tcp dport 8091 dnat (ip )?to numgen inc mod 2 map/, rules);
    assert.match(rules, /ct status dnat ip daddr \. tcp dport @remote_backends masquerade/, rules);
    // h3 drops off the LAN: its packets go nowhere, as when a machine loses power.
    const peer = `${lan.prefix}p3`;
    const times: number[] = [];
    execFileSync('ip', ['-n', lan.lanNs, 'link', 'set', peer, 'down']);
    try {
      for (let i = 0; i < 20; i++) {
        const t0 = Date.now();
        const r = await httpGet(h1, `http://${h1.address}:8091/`, 5000);
        const ms = Date.now() - t0;
        times.push(ms);
        assert.equal(r.code, 0, `request ${i} failed after ${ms} ms: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`on node ${h2.address.replace(/\./g, '\\.')}`), `request ${i}`);
        assert.ok(ms < 1500, `request ${i} took ${ms} ms (all: ${times.join(', ')})`);
        await new Promise((res) => setTimeout(res, 50));
      }
      t.diagnostic(`request times with h3 gone (ms): ${times.join(', ')}`);
    } finally {
      execFileSync('ip', ['-n', lan.lanNs, 'link', 'set', peer, 'up']);
    }
    await waitFor('3 ready nodes again', async () => (await yunJson<{ status: string }[]>(h1, ['node', 'ls'])).every((n) => n.status === 'ready') || undefined, 60_000);
  });

  it('networks are isolated; `yun run --network` is refused on a non-attachable network and works on an attachable one', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(h1, ['network', 'create', 'mynet2', '--subnet', '10.99.0.0/24']);
    await yunOk(h1, ['service', 'create', '--name', 'other', '--network', 'mynet2', '--image', 'busybox', '--constraint', 'node.role==worker', '--', 'httpd', '-f', '-p', '80', '-h', '/www']);
    const other = (await running('other', 1))[0]!;
    const addr = other.networks![0]!.address;
    assert.match(addr, /^10\.99\.0\./);
    const t0 = Date.now();
    const r = await exec(client.id, ['timeout', '3', 'wget', '-q', '-O-', `http://${addr}/`]);
    assert.notEqual(r.code, 0, `mynet1 reached a task of mynet2: ${r.stdout}`);
    assert.ok(Date.now() - t0 < 8000, 'refused fast, not hung');
    const ns = await exec(client.id, ['nslookup', 'other']);
    assert.doesNotMatch(ns.stdout, /10\.99\.0\./, ns.stdout);

    const refused = await yun(h1, ['run', '--rm', '--network', 'mynet1', 'busybox', '--', 'true']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /YUN_NETWORK_NOT_ATTACHABLE|not attachable/, refused.stderr);
    const rm = await yun(h1, ['network', 'rm', 'mynet1']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /in use by services? .*mynginx/, rm.stderr);

    await yunOk(h1, ['network', 'create', '--attachable', 'debugnet']);
    await yunOk(h1, ['service', 'update', '--network-add', 'debugnet', 'mynginx']);
    await waitFor('mynginx updated onto debugnet', async () => { const ts = await tasksOf('mynginx'); return ts.length === 2 && ts.every((x) => x.networks?.length === 2); }, 60_000)
      .catch(async (e) => { throw new Error(`${(e as Error).message}\n${(await yunJson<Task[]>(h1, ['service', 'ps', 'mynginx'])).map((x) => `${x.name} ${x.node_id} ${x.status.state} ${x.status.message} ${x.status.error} ${JSON.stringify(x.networks)}`).join('\n')}\n${JSON.stringify(await yunJson(h1, ['service', 'inspect', 'mynginx']).catch(async () => (await yun(h1, ['service', 'inspect', 'mynginx'])).stdout))}`); });
    const one = await yun(h1, ['run', '--rm', '--network', 'debugnet', 'busybox', '--', 'timeout', '3', 'wget', '-q', '-O-', 'http://mynginx/'], 120_000);
    assert.equal(one.code, 0, one.stdout + one.stderr);
    assert.match(one.stdout, /served by/);
  });
});
