/**
 * The tinyvm guest: the initrd's /init and the root disk's boot scripts, as string constants (tsc
 * does not copy non-TS files into dist/). The lines the scripts print to the console that start with
 * `YUN-INITRD` or `YUN-GUEST` are a contract (see README.md): the qemu driver, its tests and the
 * benchmarks wait for them. Keep them exact.
 *
 * The scripts are written in `sh` template literals below: no interpolation happens, and `$\{` in
 * the source stands for the shell's `${` (a plain `${` would be a TypeScript interpolation).
 */

/** A raw template without interpolations; `$\{` becomes `${`. */
function sh(s: TemplateStringsArray, ...none: never[]): string {
  if (none.length > 0) throw new Error('guest scripts take no interpolations');
  return s.raw.join('').replaceAll('$\\{', '${');
}

/** The hostname of the image when no seed names one. */
export const DEFAULT_HOSTNAME = 'tinyvm';

/** The root file system's label (`root=LABEL=yunroot`). */
export const ROOT_LABEL = 'yunroot';

/** Where the initrd keeps the modules and the file listing them in load order. */
export const INITRD_MODULE_DIR = 'lib/modules';
export const INITRD_MODULE_ORDER = 'etc/modules.order';

/**
 * The initrd's /init: drivers, the root disk, switch_root. Modules are listed one file name a line in
 * /etc/modules.order, dependencies first.
 */
export const INITRD_INIT = sh`#!/bin/sh
# tinyvm initrd: load the drivers, find the root disk, switch to it.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Drivers whose bus or device is absent fail or do nothing: that is fine.
while read -r m; do
  [ -n "$m" ] && insmod "/lib/modules/$m" 2>/dev/null
done < /etc/modules.order
read -r up _ < /proc/uptime
echo "YUN-INITRD uptime=$up"

root=LABEL=yunroot
for arg in $(cat /proc/cmdline); do
  case "$arg" in root=*) root="$\{arg#root=}" ;; esac
done
dev=
i=0
while [ "$i" -lt 50 ]; do
  case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    /dev/*) [ -b "$root" ] && dev="$root" ;;
    *) [ -b "/dev/$root" ] && dev="/dev/$root" ;;
  esac
  [ -n "$dev" ] && break
  sleep 0.1
  i=$((i + 1))
done
fail() {
  echo "YUN-INITRD error: $*"
  poweroff -f
  sleep 5
  exit 1
}
[ -n "$dev" ] || fail "no root disk root=$root after 5 s"
mkdir -p /newroot
mount -t ext4 -o rw "$dev" /newroot || fail "cannot mount $dev (root=$root) as ext4"
[ -x /newroot/sbin/init ] || fail "$dev (root=$root) has no /sbin/init"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
`;

export const INITTAB = sh`::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -n -l /bin/sh -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
`;

/**
 * Flattens the YAML subset of NoCloud seed files into `path=value` lines: `a: {b: c}` and block maps
 * give `a.b=c`; lists of scalars (block `- x` or flow `[x, y]`) give `a[]=x` lines; lists of maps
 * give numbered paths (`routes.0.to=default`). Scalars may be plain, 'single' or "double" quoted
 * (escapes \\ \" \n \t). Comments, `---`, and block scalars (`|`, `>`: skipped) are understood;
 * anchors, tags and multi-line flow collections are not.
 */
export const YAML_AWK = sh`# tinyvm: flattens the YAML subset of NoCloud seeds into path=value lines.
function unquote(v,    out, c, i, n, q) {
  sub(/^[ ]+/, "", v)
  q = substr(v, 1, 1)
  if (q == "\"") {
    out = ""; n = length(v)
    for (i = 2; i <= n; i++) {
      c = substr(v, i, 1)
      if (c == "\\") {
        i++; c = substr(v, i, 1)
        if (c == "n" || c == "t") c = " "
        out = out c; continue
      }
      if (c == "\"") break
      out = out c
    }
    return out
  }
  if (q == "'") {
    out = ""; n = length(v)
    for (i = 2; i <= n; i++) {
      c = substr(v, i, 1)
      if (c == "'") { if (substr(v, i + 1, 1) == "'") { out = out "'"; i++; continue }; break }
      out = out c
    }
    return out
  }
  sub(/[ ]+#.*$/, "", v)
  sub(/[ ]+$/, "", v)
  if (v == "~" || v == "null") v = ""
  return v
}
# The position of the ':' that ends a mapping key in t, or 0 (t is a scalar).
function keyend(t,    q, i, n, c) {
  q = substr(t, 1, 1)
  if (q == "\"" || q == "'") {
    n = length(t)
    for (i = 2; i <= n; i++) {
      c = substr(t, i, 1)
      if (q == "\"" && c == "\\") { i++; continue }
      if (c == q) {
        if (q == "'" && substr(t, i + 1, 1) == "'") { i++; continue }
        if (substr(t, i + 1, 1) == ":" && (i + 1 == n || substr(t, i + 2, 1) == " ")) return i + 1
        return 0
      }
    }
    return 0
  }
  if (match(t, /:( |$)/)) return RSTART
  return 0
}
function path(    p, k) {
  p = ""
  for (k = 1; k <= d; k++) p = p (k > 1 ? "." : "") key[k]
  return p
}
# A flow collection "[a, 'b']" or "{k: v, k2: [x, y]}" on one line.
function flow(p, v,    op, cl, body, n, i, c, q, cur, depth) {
  op = substr(v, 1, 1); cl = (op == "[") ? "]" : "}"
  body = substr(v, 2)
  n = length(body)
  while (n > 0 && substr(body, n, 1) != cl) n--
  body = substr(body, 1, n - 1)
  n = length(body); cur = ""; q = ""; depth = 0
  for (i = 1; i <= n; i++) {
    c = substr(body, i, 1)
    if (q != "") {
      cur = cur c
      if (q == "\"" && c == "\\") { i++; cur = cur substr(body, i, 1); continue }
      if (c == q) q = ""
      continue
    }
    if (c == "\"" || c == "'") { q = c; cur = cur c; continue }
    if (c == "[" || c == "{") depth++
    if (c == "]" || c == "}") depth--
    if (c == "," && depth == 0) { flowitem(p, op, cur); cur = ""; continue }
    cur = cur c
  }
  flowitem(p, op, cur)
}
function flowitem(p, op, t,    e, v) {
  sub(/^[ ]+/, "", t); sub(/[ ]+$/, "", t)
  if (t == "") return
  if (op == "[") { if (t !~ /^[[{]/) print p "[]=" unquote(t); return }
  e = keyend(t)
  if (e == 0) return
  v = substr(t, e + 1); sub(/^[ ]+/, "", v)
  if (v ~ /^[[{]/) flow(p "." unquote(substr(t, 1, e - 1)), v)
  else print p "." unquote(substr(t, 1, e - 1)) "=" unquote(v)
}
BEGIN { d = 0; skip = -1 }
{
  line = $0
  sub(/\r$/, "", line)
  gsub(/\t/, "  ", line)
  if (line ~ /^[ ]*(#.*)?$/) next
  if (line ~ /^(---|\.\.\.)( |$)/) next
  match(line, /^ */); indent = RLENGTH; s = substr(line, indent + 1)
  if (skip >= 0) { if (indent > skip) next; skip = -1 }
  if (s ~ /^-( |$)/) {
    while (d > 0 && (ind[d] > indent || (ind[d] == indent && item[d]))) d--
    p = path()
    rest = substr(s, 2); match(rest, /^ */); sp = RLENGTH; rest = substr(rest, sp + 1)
    if (rest == "" || rest ~ /^#/ || keyend(rest) > 0) {
      d++; ind[d] = indent; key[d] = cnt[p] + 0; item[d] = 1; cnt[p]++
      if (keyend(rest) == 0) next
      indent = indent + 1 + sp; s = rest
    } else if (rest ~ /^[[{]/) {
      next
    } else {
      print p "[]=" unquote(rest)
      next
    }
  }
  while (d > 0 && ind[d] >= indent) d--
  e = keyend(s)
  if (e == 0) next
  k = unquote(substr(s, 1, e - 1)); v = substr(s, e + 1); sub(/^ +/, "", v)
  d++; ind[d] = indent; key[d] = k; item[d] = 0
  if (v == "" || v ~ /^#/) next
  if (v ~ /^[|>]/) { skip = indent; d--; next }
  if (v ~ /^[[{]/) { flow(path(), v); d--; next }
  print path() "=" unquote(v)
  d--
}
`;

/** busybox udhcpc's event script (busybox has none built in). */
export const UDHCPC_SCRIPT = sh`#!/bin/sh
# udhcpc event script: configures $interface from the lease.
prefix() {
  n=0
  for o in $(echo "$1" | tr . ' '); do
    case "$o" in
      255) n=$((n + 8)) ;; 254) n=$((n + 7)) ;; 252) n=$((n + 6)) ;; 248) n=$((n + 5)) ;;
      240) n=$((n + 4)) ;; 224) n=$((n + 3)) ;; 192) n=$((n + 2)) ;; 128) n=$((n + 1)) ;;
    esac
  done
  echo "$n"
}
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    m="$mask"
    [ -n "$m" ] || m=$(prefix "$\{subnet:-255.255.255.0}")
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$m" $\{broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
      while ip route del default dev "$interface" 2>/dev/null; do :; done
      for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    fi
    if [ -n "$dns" ] || [ -n "$domain" ]; then
      {
        [ -n "$domain" ] && echo "search $domain"
        for s in $dns; do echo "nameserver $s"; done
      } > /etc/resolv.conf
    fi
    ;;
esac
exit 0
`;

/** Boot (init's sysinit): the seed, the network, user-data, httpd. Never fails the boot. */
export const RC_S = sh`#!/bin/sh
# tinyvm boot (sysinit). The YUN-GUEST lines on the console are a contract: keep them exact.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
[ -r /proc/uptime ] || mount -t proc proc /proc
read -r up _ < /proc/uptime
echo "YUN-GUEST init reached uptime=$up" > /dev/console
exec < /dev/null > /dev/console 2>&1

[ -d /sys/class ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /run/tinyvm /var/lib/cloud/sem /var/lib/cloud/scripts
hostname -F /etc/hostname 2>/dev/null || hostname tinyvm
ip link set lo up
# The ACPI power button (QMP system_powerdown) runs /etc/acpi/PWRF/00000080: poweroff.
acpid -c /etc/acpi -l /run/acpid.log

Y=/usr/lib/tinyvm/yaml.awk
yget() { awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$2"; }
yall() { awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2) }' "$2"; }
first_nic() {
  for p in /sys/class/net/*; do
    n="$\{p##*/}"
    [ "$n" = lo ] && continue
    [ -e "$p" ] || continue
    case " $used " in *" $n "*) continue ;; esac
    echo "$n"
    return
  done
}

seed=
for try in 1 2 3 4 5 6 7 8 9 10; do
  seed=$(findfs LABEL=cidata 2>/dev/null) || seed=$(findfs LABEL=CIDATA 2>/dev/null) || seed=
  [ -n "$seed" ] && break
  # Wait a little only when there is a second disk (it may still be probing).
  set -- /sys/block/vd*
  [ "$#" -gt 1 ] || break
  sleep 0.1
done
if [ -n "$seed" ]; then
  mkdir -p /run/cidata
  mount -t vfat -o ro "$seed" /run/cidata 2>/dev/null || mount -t iso9660 -o ro "$seed" /run/cidata 2>/dev/null || {
    echo "YUN-GUEST seed error: cannot mount $seed (neither vfat nor iso9660)"
    seed=
  }
fi

hn=$(hostname)
address=none
used=
if [ -z "$seed" ]; then
  echo "YUN-GUEST seed none"
  # Like cloud-init's fallback: DHCP on the first interface, in the background (no one may answer).
  nic=$(first_nic)
  if [ -n "$nic" ]; then
    ip link set "$nic" up
    udhcpc -i "$nic" -n -q -t 3 -T 2 -s /usr/share/udhcpc/default.script > /run/tinyvm/udhcpc.log 2>&1 &
  fi
else
  M=/run/tinyvm/meta-data.flat
  N=/run/tinyvm/network-config.flat
  : > "$M"; : > "$N"
  [ -f /run/cidata/meta-data ] && awk -f "$Y" /run/cidata/meta-data > "$M"
  [ -f /run/cidata/network-config ] && awk -f "$Y" /run/cidata/network-config | sed 's/^network\.//' > "$N"

  iid=$(yget instance-id "$M")
  [ -n "$iid" ] || iid=unknown
  name=$(yget local-hostname "$M")
  [ -n "$name" ] || name=$(yget hostname "$M")
  case "$name" in
    ''|-*|*[!A-Za-z0-9.-]*) [ -n "$name" ] && echo "YUN-GUEST seed warning: invalid local-hostname '$name' ignored" ;;
    *) hn="$name" ;;
  esac
  hostname "$hn"
  echo "$hn" > /etc/hostname
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$hn" > /etc/hosts

  awk '/^public-keys(\[\]|\.[^=]*)?=/ { sub(/^[^=]*=/, ""); if ($0 != "") print }' "$M" > /run/tinyvm/keys
  keys=$(wc -l < /run/tinyvm/keys)
  if [ "$keys" -gt 0 ]; then
    mkdir -p /root/.ssh
    chmod 700 /root/.ssh
    cp /run/tinyvm/keys /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
  fi

  # Network: netplan version 2 (a subset), else DHCP on the first interface.
  dhcp_on=
  if [ -s "$N" ]; then
    v=$(yget version "$N")
    if [ "$v" != 2 ]; then
      echo "YUN-GUEST seed warning: network-config version '$v' is not supported (only version 2): using DHCP"
      : > "$N"
    fi
  fi
  ids=$(awk -F. '$1 == "ethernets" && NF > 1 { sub(/[=[].*$/, "", $2); if (!seen[$2]++) print $2 }' "$N")
  if [ ! -s "$N" ]; then
    nic=$(first_nic)
    [ -n "$nic" ] && dhcp_on="$nic"
  fi
  for id in $ids; do
    e="ethernets.$id"
    mac=$(yget "$e.match.macaddress" "$N" | tr A-F a-f)
    nic=
    if [ -n "$mac" ]; then
      for p in /sys/class/net/*; do
        [ "$(cat "$p/address" 2>/dev/null)" = "$mac" ] && nic="$\{p##*/}"
      done
      [ -n "$nic" ] || echo "YUN-GUEST seed warning: no interface has MAC $mac ($e)"
    fi
    [ -n "$nic" ] || nic=$(first_nic)
    [ -n "$nic" ] || { echo "YUN-GUEST seed warning: no network interface for $e"; continue; }
    new=$(yget "$e.set-name" "$N")
    if [ -n "$new" ] && [ "$new" != "$nic" ] && [ ! -e "/sys/class/net/$new" ]; then
      ip link set "$nic" down
      ip link set "$nic" name "$new" && nic="$new"
    fi
    used="$used $nic"
    ip link set "$nic" up
    for a in $(yall "$e.addresses[]" "$N"); do
      ip addr add "$a" dev "$nic" && [ "$address" = none ] && address="$a"
    done
    gw=$(yget "$e.gateway4" "$N")
    [ -n "$gw" ] && ip route add default via "$gw" dev "$nic"
    r=0
    while grep -q "^$e\.routes\.$r\." "$N"; do
      to=$(yget "$e.routes.$r.to" "$N"); via=$(yget "$e.routes.$r.via" "$N")
      case "$to" in
        default|0.0.0.0/0) [ -n "$via" ] && ip route add default via "$via" dev "$nic" ;;
        ?*) [ -n "$via" ] && ip route add "$to" via "$via" dev "$nic" ;;
      esac
      r=$((r + 1))
    done
    ns=$(yall "$e.nameservers.addresses[]" "$N")
    search=$(yall "$e.nameservers.search[]" "$N")
    if [ -n "$ns$search" ]; then
      {
        [ -n "$search" ] && echo "search" $search
        for s in $ns; do echo "nameserver $s"; done
      } > /etc/resolv.conf
    fi
    case "$(yget "$e.dhcp4" "$N")" in true|yes|on|True|TRUE) dhcp_on="$dhcp_on $nic" ;; esac
  done
  for nic in $dhcp_on; do
    ip link set "$nic" up
    if udhcpc -i "$nic" -n -q -t 3 -T 2 -s /usr/share/udhcpc/default.script > /run/tinyvm/udhcpc.log 2>&1; then
      [ "$address" = none ] && address=dhcp
    else
      echo "YUN-GUEST seed warning: DHCP on $nic failed (no lease after 3 tries)"
    fi
  done

  echo "YUN-GUEST seed instance-id=$iid hostname=$hn address=$address keys=$keys"

  # Secrets and configs (Yunstack's yun-files/): placed at every boot, with their owner and mode.
  fl=/run/cidata/yun-files/list
  if [ -f "$fl" ]; then
    placed=0
    while read -r fmode fuid fgid fidx ftarget; do
      [ -n "$ftarget" ] || continue
      mkdir -p "$(dirname "$ftarget")"
      if cp "/run/cidata/yun-files/$fidx" "$ftarget.yun-tmp" && chown "$fuid:$fgid" "$ftarget.yun-tmp" && chmod "$fmode" "$ftarget.yun-tmp" && mv -f "$ftarget.yun-tmp" "$ftarget"; then
        placed=$((placed + 1))
      else
        rm -f "$ftarget.yun-tmp"
        echo "YUN-GUEST files error: cannot place $ftarget"
      fi
    done < "$fl"
    echo "YUN-GUEST files placed=$placed"
  fi

  ud=/run/cidata/user-data
  if [ -s "$ud" ]; then
    case "$(head -c 2 "$ud")" in
      '#!')
        safe=$(printf %s "$iid" | tr -c 'A-Za-z0-9._-' '_')
        sem="/var/lib/cloud/sem/user-data.$safe"
        if [ -e "$sem" ]; then
          echo "YUN-GUEST user-data skipped (already run for instance $iid)"
        else
          script="/var/lib/cloud/scripts/user-data.$safe"
          cp "$ud" "$script"
          chmod 700 "$script"
          date > "$sem"
          sync
          echo "YUN-GUEST user-data started"
          (
            cd /root
            "$script"
            echo "YUN-GUEST user-data finished exit=$?"
          ) < /dev/null > /dev/console 2>&1 &
        fi
        ;;
      *) echo "YUN-GUEST user-data ignored: only #! scripts are supported by tinyvm" ;;
    esac
  fi
fi

echo "$hn" > /var/www/index.html
httpd -p 80 -h /var/www
echo "YUN-GUEST ready"
exit 0
`;

/** Shutdown (init's shutdown action, before it kills everything and powers off or reboots). */
export const RC_K = sh`#!/bin/sh
# tinyvm shutdown.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
# The leading newline ends a shell prompt the console may show, so the marker starts a line.
printf '\nYUN-GUEST shutting down\n' > /dev/console
for p in $(pidof httpd acpid udhcpc); do kill "$p" 2>/dev/null; done
umount /run/cidata 2>/dev/null
sync
mount -o remount,ro / 2>/dev/null || sync
exit 0
`;

/** The power button's action (busybox acpid maps the ACPI event PWRF to this file). */
export const ACPI_POWER_BUTTON = sh`#!/bin/sh
poweroff
`;

export const PROFILE = sh`export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
PS1='\h:\w\$ '
`;

export const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
export const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
export const OS_RELEASE = 'NAME=tinyvm\nID=tinyvm\nPRETTY_NAME="tinyvm (busybox, Yunstack test image)"\n';

/** Every script, for the build cache key: a change to any of them rebuilds the image. */
export const GUEST_FILES: Readonly<Record<string, string>> = {
  init: INITRD_INIT,
  inittab: INITTAB,
  'yaml.awk': YAML_AWK,
  'udhcpc.script': UDHCPC_SCRIPT,
  rcS: RC_S,
  rcK: RC_K,
  pwrf: ACPI_POWER_BUTTON,
  profile: PROFILE,
  passwd: PASSWD,
  group: GROUP,
  'os-release': OS_RELEASE,
  hostname: DEFAULT_HOSTNAME,
};
