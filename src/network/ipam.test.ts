// IPAM tests (pure): parsing and checking subnets, cutting them into node slices, handing out
// task addresses, VIPs and free subnets, and the kernel-facing names and MACs of a network.
// Example tests for each function, then properties (fast-check) over random subnets.
//
// The fast-check seed is fixed by default and printed; FC_SEED=<n> replays or explores another one,
// FC_RUNS=<n> changes the number of runs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DEFAULT_POOL, MAX_PREFIX, contains, deviceNames, formatCidr, freeSlice, freeSubnet, freeTaskAddress, freeVip, gateway, intToIp, ipToInt,
  nodeSliceCount, overlaps, parseCidr, slice, sliceCount, slicePrefix, sliceSize, subnetProblem, vtepAddress, vtepMac, type Cidr,
} from './ipam.js';

const SEED = process.env.FC_SEED !== undefined && process.env.FC_SEED !== '' ? Number(process.env.FC_SEED) : 20261126;
const RUNS = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 300;

const cidr = (text: string): Cidr => parseCidr(text);
/** Every address of a slice, in order. */
const addressesOf = (c: Cidr, index: number): string[] => {
  const s = slice(c, index);
  return Array.from({ length: sliceSize(c) }, (_, i) => intToIp(s.base + i));
};

describe('ipam: addresses and CIDR text', () => {
  it('ipToInt / intToIp round trip, including the extremes', () => {
    for (const ip of ['0.0.0.0', '10.20.30.40', '192.168.1.255', '255.255.255.255']) assert.equal(intToIp(ipToInt(ip)), ip);
    assert.equal(ipToInt('255.255.255.255'), 0xffffffff);
    assert.equal(ipToInt('10.0.0.1'), 0x0a000001);
    assert.throws(() => ipToInt('256.0.0.1'), /is not an IPv4 address/);
    assert.throws(() => ipToInt('10.0.0'), /is not an IPv4 address/);
  });

  it('parseCidr accepts a network address: 10.20.0.0/16', () => {
    assert.deepEqual(parseCidr('10.20.0.0/16'), { base: ipToInt('10.20.0.0'), prefix: 16 });
    assert.deepEqual(parseCidr(' 10.20.0.0/16 '), { base: ipToInt('10.20.0.0'), prefix: 16 }, 'surrounding blanks are ignored');
    assert.deepEqual(parseCidr('1.2.3.4/32'), { base: ipToInt('1.2.3.4'), prefix: 32 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { base: 0, prefix: 0 });
    assert.equal(formatCidr(parseCidr('10.20.0.0/16')), '10.20.0.0/16');
  });

  it('parseCidr refuses host bits and suggests the network address', () => {
    assert.throws(() => parseCidr('10.20.0.1/16'), (e: Error) => {
      assert.match(e.message, /host bits set/);
      assert.match(e.message, /did you mean 10\.20\.0\.0\/16\?/);
      return true;
    });
    assert.throws(() => parseCidr('10.99.0.1/24'), /did you mean 10\.99\.0\.0\/24/);
    assert.throws(() => parseCidr('192.168.1.130/25'), /did you mean 192\.168\.1\.128\/25/);
  });

  it('parseCidr refuses text that is not CIDR', () => {
    for (const bad of ['', 'foo', '10.20.0.0', '10.20.0.0/', '/16', '10.20.0.0/16/1', '10.20.0.0/abc', 'a.b.c.d/8', '10.20.0.0 /16', '10.20.0.0/123']) {
      assert.throws(() => parseCidr(bad), /is not a subnet in CIDR form/, `"${bad}" should be refused as not CIDR`);
    }
    for (const bad of ['10.20.0/16', '10..0.0/8', '300.0.0.0/8', '1.2.3.4.5/8']) {
      assert.throws(() => parseCidr(bad), /is not an IPv4 address/, `"${bad}" should be refused as not an address`);
    }
  });

  it('parseCidr refuses a prefix longer than 32', () => {
    assert.throws(() => parseCidr('10.0.0.0/33'), /the prefix length must be 0…32/);
    assert.throws(() => parseCidr('10.0.0.0/99'), /the prefix length must be 0…32/);
  });
});

describe('ipam: which subnets an overlay network may have', () => {
  it('/8 … /26 of ordinary space are fine', () => {
    for (const ok of ['10.0.0.0/8', '10.128.0.0/16', '10.99.0.0/24', '192.168.7.0/26', '172.16.0.0/12', '223.255.255.192/26']) {
      assert.equal(subnetProblem(cidr(ok)), null, ok);
    }
  });

  it('/27 and smaller: too small, says the smallest allowed', () => {
    assert.equal(MAX_PREFIX, 26);
    assert.match(subnetProblem(cidr('10.99.0.0/27'))!, /a \/27 is too small .* at least a \/26/);
    assert.match(subnetProblem(cidr('10.99.0.0/32'))!, /too small/);
  });

  it('/7 and larger: too large', () => {
    assert.match(subnetProblem(cidr('10.0.0.0/7'))!, /a \/7 is too large: use at most a \/8/);
    assert.match(subnetProblem(cidr('0.0.0.0/0'))!, /too large/);
  });

  it('loopback, "this network", multicast and reserved space are refused', () => {
    for (const bad of ['127.0.0.0/8', '127.5.0.0/16', '0.0.0.0/8', '224.0.0.0/8', '239.1.0.0/16', '240.0.0.0/8', '255.255.255.0/24']) {
      assert.match(subnetProblem(cidr(bad))!, /is not usable \(loopback/, bad);
    }
  });
});

describe('ipam: node slices', () => {
  it('a /16 is cut into 256 /24 slices, 255 of them for nodes', () => {
    const c = cidr('10.20.0.0/16');
    assert.equal(slicePrefix(16), 24);
    assert.equal(sliceCount(c), 256);
    assert.equal(nodeSliceCount(c), 255);
    assert.equal(sliceSize(c), 256);
    assert.deepEqual(slice(c, 3), cidr('10.20.3.0/24'));
    assert.deepEqual(slice(c, 255), cidr('10.20.255.0/24'));
  });

  it('a /24 is cut into 16 /28 slices', () => {
    const c = cidr('10.99.0.0/24');
    assert.equal(slicePrefix(24), 28);
    assert.equal(sliceCount(c), 16);
    assert.equal(sliceSize(c), 16);
    assert.deepEqual(slice(c, 1), cidr('10.99.0.16/28'));
    assert.deepEqual(slice(c, 15), cidr('10.99.0.240/28'));
  });

  it('a /26 (the smallest) has 4 /28 slices: three nodes and the VIPs', () => {
    const c = cidr('192.168.7.0/26');
    assert.equal(slicePrefix(26), 28);
    assert.equal(sliceCount(c), 4);
    assert.equal(nodeSliceCount(c), 3);
  });

  it('slices are /24 on large subnets, 16 at least, never below /28', () => {
    assert.equal(slicePrefix(8), 24);
    assert.equal(sliceCount(cidr('10.0.0.0/8')), 65536);
    assert.equal(slicePrefix(20), 24);
    assert.equal(sliceCount(cidr('10.0.0.0/20')), 16);
    assert.equal(slicePrefix(22), 26);
    assert.equal(sliceCount(cidr('10.0.0.0/22')), 16);
    for (let p = 8; p <= MAX_PREFIX; p++) {
      const sp = slicePrefix(p);
      assert.ok(sp >= 24 && sp <= 28, `/${p} → /${sp}`);
      assert.ok(sliceCount(cidr(`10.0.0.0/${p}`)) >= 4, `/${p} has at least 4 slices`);
    }
  });

  it('gateway is .1 and the VXLAN endpoint .0 of a slice', () => {
    const c = cidr('10.20.0.0/16');
    assert.equal(vtepAddress(c, 0), '10.20.0.0');
    assert.equal(gateway(c, 0), '10.20.0.1');
    assert.equal(vtepAddress(c, 7), '10.20.7.0');
    assert.equal(gateway(c, 7), '10.20.7.1');
    const small = cidr('10.99.0.0/24');
    assert.equal(vtepAddress(small, 1), '10.99.0.16');
    assert.equal(gateway(small, 1), '10.99.0.17');
    assert.equal(gateway(small, 14), '10.99.0.225');
  });

  it('freeSlice: the lowest unused, never the last (VIP) slice, null when full', () => {
    const c = cidr('192.168.7.0/26');
    assert.equal(freeSlice(c, []), 0);
    assert.equal(freeSlice(c, [0]), 1);
    assert.equal(freeSlice(c, [0, 2]), 1);
    assert.equal(freeSlice(c, [1, 0]), 2);
    assert.equal(freeSlice(c, [0, 1, 2]), null, 'slice 3 is the VIP slice');
    assert.equal(freeSlice(c, new Set([2, 1, 0])), null);
    const big = cidr('10.20.0.0/16');
    const all = Array.from({ length: 255 }, (_, i) => i);
    assert.equal(freeSlice(big, all), null);
    assert.equal(freeSlice(big, all.filter((i) => i !== 254)), 254);
  });
});

describe('ipam: task addresses and VIPs', () => {
  it('freeTaskAddress starts at .2 of the slice and skips used addresses', () => {
    const c = cidr('10.20.0.0/16');
    assert.equal(freeTaskAddress(c, 0, []), '10.20.0.2');
    assert.equal(freeTaskAddress(c, 5, []), '10.20.5.2');
    assert.equal(freeTaskAddress(c, 5, ['10.20.5.2', '10.20.5.3']), '10.20.5.4');
    assert.equal(freeTaskAddress(c, 5, ['10.20.5.2', '10.20.5.4']), '10.20.5.3');
    assert.equal(freeTaskAddress(c, 5, ['10.20.6.2']), '10.20.5.2', 'another slice\'s addresses do not matter');
  });

  it('freeTaskAddress never returns .0, .1 or the broadcast address, and is null when the slice is full', () => {
    const c = cidr('10.99.0.0/24');
    // slice 1 is 10.99.0.16/28: .16 vtep, .17 gateway, .18….30 tasks, .31 broadcast.
    const taken: string[] = [];
    for (let n = 0; n < 13; n++) {
      const a = freeTaskAddress(c, 1, taken);
      assert.ok(a, `address ${n}`);
      assert.ok(!['10.99.0.16', '10.99.0.17', '10.99.0.31'].includes(a), a);
      taken.push(a);
    }
    assert.deepEqual(taken, Array.from({ length: 13 }, (_, i) => `10.99.0.${18 + i}`));
    assert.equal(freeTaskAddress(c, 1, taken), null);
    // Even when only .0, .1 and broadcast are "free".
    const everythingElse = addressesOf(c, 1).filter((a) => !['10.99.0.16', '10.99.0.17', '10.99.0.31'].includes(a));
    assert.equal(freeTaskAddress(c, 1, everythingElse), null);
  });

  it('freeVip stays in the last slice (from .1 to the one before broadcast), null when full', () => {
    const c = cidr('10.99.0.0/24');
    assert.equal(freeVip(c, []), '10.99.0.241');
    assert.equal(freeVip(c, ['10.99.0.241']), '10.99.0.242');
    const vips: string[] = [];
    for (let v = freeVip(c, vips); v !== null; v = freeVip(c, vips)) {
      assert.ok(contains(slice(c, sliceCount(c) - 1), ipToInt(v)), `${v} is in the VIP slice`);
      assert.notEqual(v, '10.99.0.255');
      assert.notEqual(v, '10.99.0.240');
      vips.push(v);
    }
    assert.equal(vips.length, 14);
    assert.equal(vips.at(-1), '10.99.0.254');
    const big = cidr('10.128.0.0/16');
    assert.equal(freeVip(big, []), '10.128.255.1');
    assert.equal(freeVip(big, ['10.128.255.1', '10.128.0.2']), '10.128.255.2');
  });

  it('no node slice ever reaches the VIP slice', () => {
    for (const text of ['10.0.0.0/8', '10.20.0.0/16', '10.99.0.0/24', '192.168.7.0/26', '10.0.0.0/22']) {
      const c = cidr(text);
      const vipSlice = slice(c, sliceCount(c) - 1);
      for (const i of [0, nodeSliceCount(c) - 1]) assert.ok(!overlaps(slice(c, i), vipSlice), `${text} slice ${i}`);
      assert.ok(contains(c, vipSlice.base + sliceSize(c) - 1), `${text}: the VIP slice ends inside the subnet`);
    }
  });
});

describe('ipam: subnets of the pool', () => {
  it('overlaps and contains', () => {
    assert.ok(overlaps(cidr('10.0.0.0/8'), cidr('10.5.0.0/16')));
    assert.ok(overlaps(cidr('10.5.0.0/16'), cidr('10.0.0.0/8')));
    assert.ok(overlaps(cidr('10.99.0.0/24'), cidr('10.99.0.0/16')));
    assert.ok(overlaps(cidr('10.99.0.0/24'), cidr('10.99.0.0/24')));
    assert.ok(!overlaps(cidr('10.0.0.0/16'), cidr('10.1.0.0/16')));
    assert.ok(!overlaps(cidr('10.99.0.0/25'), cidr('10.99.0.128/25')));
    assert.ok(contains(cidr('10.0.0.0/16'), ipToInt('10.0.255.255')));
    assert.ok(contains(cidr('10.0.0.0/16'), ipToInt('10.0.0.0')));
    assert.ok(!contains(cidr('10.0.0.0/16'), ipToInt('10.1.0.0')));
    assert.ok(!contains(cidr('10.0.0.0/16'), ipToInt('9.255.255.255')));
    assert.ok(contains(cidr('0.0.0.0/0'), ipToInt('255.255.255.255')));
  });

  it('freeSubnet: the first free /16 of 10.128.0.0/9, avoiding every overlap', () => {
    assert.equal(formatCidr(DEFAULT_POOL), '10.128.0.0/9');
    assert.equal(formatCidr(freeSubnet([])!), '10.128.0.0/16');
    assert.equal(formatCidr(freeSubnet([cidr('10.128.0.0/16')])!), '10.129.0.0/16');
    assert.equal(formatCidr(freeSubnet([cidr('10.128.5.0/24')])!), '10.129.0.0/16', 'a small subnet inside blocks its /16');
    assert.equal(formatCidr(freeSubnet([cidr('10.128.0.0/15'), cidr('10.131.0.0/16')])!), '10.130.0.0/16');
    assert.equal(formatCidr(freeSubnet([cidr('10.0.0.0/16'), cidr('192.168.0.0/16')])!), '10.128.0.0/16', 'outside the pool does not matter');
  });

  it('freeSubnet is null when the pool is exhausted', () => {
    assert.equal(freeSubnet([cidr('10.128.0.0/9')]), null);
    assert.equal(freeSubnet([cidr('10.0.0.0/8')]), null);
    const all = Array.from({ length: 128 }, (_, i) => cidr(`10.${128 + i}.0.0/16`));
    assert.equal(freeSubnet(all), null);
    assert.equal(formatCidr(freeSubnet(all.slice(0, 127))!), '10.255.0.0/16');
    const pool = cidr('192.168.0.0/23');
    assert.equal(formatCidr(freeSubnet([], pool, 24)!), '192.168.0.0/24');
    assert.equal(formatCidr(freeSubnet([cidr('192.168.0.0/24')], pool, 24)!), '192.168.1.0/24');
    assert.equal(freeSubnet([cidr('192.168.0.0/24'), cidr('192.168.1.0/24')], pool, 24), null);
  });
});

describe('ipam: device names and MACs', () => {
  it('device names fit the kernel\'s 15 bytes for every VNI up to 16777215', () => {
    for (const vni of [4096, 4097, 65535, 65536, 999_999, 16_777_214, 16_777_215]) {
      const d = deviceNames(vni);
      assert.ok(Buffer.byteLength(d.bridge) <= 15, d.bridge);
      assert.ok(Buffer.byteLength(d.vxlan) <= 15, d.vxlan);
      assert.notEqual(d.bridge, d.vxlan);
    }
    assert.deepEqual(deviceNames(4096), { bridge: 'yb4096', vxlan: 'yx4096', table: 0x5900 });
    assert.notEqual(deviceNames(4096).table, deviceNames(4097).table);
  });

  it('vtepMac: six octets, locally administered unicast, stable', () => {
    const m = vtepMac(4096, 3);
    assert.match(m, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    assert.equal(m, vtepMac(4096, 3));
    const first = parseInt(m.slice(0, 2), 16);
    assert.equal(first & 0x02, 0x02, 'locally administered bit');
    assert.equal(first & 0x01, 0, 'unicast');
  });

  it('vtepMac is unique per (vni, slice)', () => {
    // The MAC holds all 24 bits of the VNI and 16 of the slice index.
    const seen = new Map<string, string>();
    const vnis = [4096, 4097, 4351, 4352, 5000, 61439, 65535, 69632, 16_777_215];
    const slices = [0, 1, 2, 254, 255, 256, 65534];
    for (const vni of vnis) {
      for (const s of slices) {
        const mac = vtepMac(vni, s);
        const prev = seen.get(mac);
        assert.equal(prev, undefined, `${mac} for vni ${vni} slice ${s} and for ${prev}`);
        seen.set(mac, `vni ${vni} slice ${s}`);
      }
    }
  });
});

// ---- properties -------------------------------------------------------------------------------------

/** A random usable subnet /8…/26 (host bits cleared, first octet 1…223 but not 127). */
const genSubnet: fc.Arbitrary<Cidr> = fc
  .record({ prefix: fc.integer({ min: 8, max: MAX_PREFIX }), first: fc.integer({ min: 1, max: 223 }).filter((x) => x !== 127), rest: fc.integer({ min: 0, max: 0xffffff }) })
  .map(({ prefix, first, rest }) => {
    const raw = ((first << 24) | rest) >>> 0;
    const m = (0xffffffff << (32 - prefix)) >>> 0;
    return { base: (raw & m) >>> 0, prefix };
  });

describe('ipam: properties (fast-check)', () => {
  it('freeTaskAddress returns only addresses of that node slice, never used, never .0/.1/broadcast', () => {
    console.log(`# ipam property: fast-check seed ${SEED}, ${RUNS} runs (FC_SEED / FC_RUNS to change)`);
    fc.assert(
      fc.property(
        genSubnet.chain((c) => fc.record({
          c: fc.constant(c),
          index: fc.integer({ min: 0, max: nodeSliceCount(c) - 1 }),
          // offsets in the slice (some used), plus strangers from anywhere
          usedOffsets: fc.array(fc.integer({ min: 0, max: sliceSize(c) - 1 }), { maxLength: sliceSize(c) * 2 }),
          fill: fc.boolean(),
          strangers: fc.array(fc.integer({ min: 0, max: 0xffffffff }).map(intToIp), { maxLength: 5 }),
        })),
        ({ c, index, usedOffsets, fill, strangers }) => {
          assert.equal(subnetProblem(c), null);
          const s = slice(c, index);
          const size = sliceSize(c);
          const offsets = fill ? Array.from({ length: size }, (_, i) => i).filter((i) => !usedOffsets.includes(i) || i % 3 !== 0) : usedOffsets;
          const used = new Set([...offsets.map((o) => intToIp(s.base + o)), ...strangers]);
          const a = freeTaskAddress(c, index, used);
          const taskRange = Array.from({ length: size - 3 }, (_, i) => intToIp(s.base + 2 + i));
          if (a === null) {
            assert.ok(taskRange.every((x) => used.has(x)), 'null only when every task address is used');
            return;
          }
          const n = ipToInt(a);
          assert.ok(contains(s, n), `${a} is inside slice ${formatCidr(s)}`);
          assert.ok(contains(c, n), `${a} is inside ${formatCidr(c)}`);
          assert.ok(!used.has(a), `${a} is not used`);
          assert.ok(n - s.base >= 2 && n - s.base <= size - 2, `${a} is not .0, .1 or broadcast of ${formatCidr(s)}`);
          assert.ok(!contains(slice(c, sliceCount(c) - 1), n), `${a} is not in the VIP slice`);
          assert.equal(a, taskRange.find((x) => !used.has(x)), 'the lowest free one');
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('freeVip stays in the last slice and avoids used VIPs; freeSlice never gives the VIP slice', () => {
    fc.assert(
      fc.property(genSubnet, fc.array(fc.nat(), { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 40 }), (c, vipPicks, slicePicks) => {
        const vipSlice = slice(c, sliceCount(c) - 1);
        const used = new Set(vipPicks.map((p) => intToIp(vipSlice.base + (p % sliceSize(c)))));
        const v = freeVip(c, used);
        if (v !== null) {
          assert.ok(contains(vipSlice, ipToInt(v)), `${v} in ${formatCidr(vipSlice)}`);
          assert.ok(!used.has(v));
          const off = ipToInt(v) - vipSlice.base;
          assert.ok(off >= 1 && off <= sliceSize(c) - 2, `${v} is neither the slice's first nor its broadcast address`);
        }
        const usedSlices = slicePicks.map((p) => p % sliceCount(c));
        const f = freeSlice(c, usedSlices);
        if (f === null) {
          for (let i = 0; i < nodeSliceCount(c); i++) assert.ok(usedSlices.includes(i), `slice ${i} is free but freeSlice gave null`);
        } else {
          assert.ok(f >= 0 && f < nodeSliceCount(c), `slice ${f} is a node slice`);
          assert.ok(!usedSlices.includes(f));
        }
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it('freeSubnet never overlaps a taken subnet and stays in the pool', () => {
    fc.assert(
      fc.property(fc.array(genSubnet, { maxLength: 12 }), fc.integer({ min: 12, max: 24 }), (taken, prefix) => {
        const r = freeSubnet(taken, DEFAULT_POOL, prefix);
        if (r === null) return;
        assert.equal(r.prefix, prefix);
        assert.ok(overlaps(r, DEFAULT_POOL) && r.prefix >= DEFAULT_POOL.prefix && contains(DEFAULT_POOL, r.base), `${formatCidr(r)} in the pool`);
        for (const t of taken) assert.ok(!overlaps(r, t), `${formatCidr(r)} overlaps ${formatCidr(t)}`);
      }),
      { seed: SEED + 2, numRuns: RUNS },
    );
  });
});
