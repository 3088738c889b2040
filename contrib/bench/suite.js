#!/usr/bin/env node
// suite.js - runs every rotor-bench scenario against the performance
// targets several times, for one or more worker counts, and prints a
// Markdown table of medians (with the range) for BENCHMARKS.md.
//
//   node contrib/bench/suite.js [--runs 5] [--workers 1,2] [--only a,b]
//        [--rotord src/rotord[,other/rotord...]] [--bench contrib/bench/rotor-bench]
//        [--readers io_uring[,recvmsg]] [--transports websocket[,http_stream,...]]
//        [--variants plain[,tls]] [--out DIR]
//
// --transports runs every client scenario over each transport given
// (rotor-bench --transport; default websocket); api and handshake have no
// transport and run once; emulation runs over each of http_stream and sse given, or
// over http_stream when neither is.
// Several rotord binaries are measured side by side (runs interleaved),
// for before/after comparisons; so are the generator's two readers with
// --readers io_uring,recvmsg (recvmsg: rotor-bench --no-uring). A run
// whose generator did not read the way it was asked (io_uring failed its
// self-check or stalled: the JSON's generator.reads) is counted in the
// runs column. So are plain and TLS connections with --variants plain,tls
// (tls: rotor-bench --tls, rotord with a test certificate). Every run's JSON line is kept in DIR (default: a new
// directory under /tmp), named SCENARIO-wWORKERS-bBINARY-READER-RUN.json
// (SCENARIO-TRANSPORT-w... for transports other than websocket, READER-tls
// for the tls variant).
// --from DIR[,DIR...] runs nothing and summarises the runs kept there (of
// the first binary; files without a reader are io_uring's) instead. One
// worker is pinned to CPU 0
// and the generator to CPU 1; with more workers than one, rotord gets
// CPUs 0-(W-1) and the generator shares them (this machine has two).
// A failed run (exit status other than 0) is reported and left out.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

// The latency scenarios' metrics: read by the generator, queued on the
// socket (contrib/bench/README: latency, arrival).
const LATENCY = [
	['p50', 'latency_us.p50', 'ms', 1e-3],
	['p99', 'latency_us.p99', 'ms', 1e-3],
	['max', 'latency_us.max', 'ms', 1e-3],
	['arrival p50', 'arrival_us.p50', 'ms', 1e-3],
	['arrival p99', 'arrival_us.p99', 'ms', 1e-3],
	['rotord CPU', 'server.cpu_pct', '%', 1]];

// name, rotor-bench arguments, metrics: [label, json path, unit, scale];
// which transports a scenario runs over: transportsOf below.
const SCENARIOS = [
	['fanout', 'fanout -n 10000 -d 5', [
		['deliveries/s', 'deliveries_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/delivery', 'server.us_per_delivery', '', 1],
		['API rtt p50', 'api_rtt_us.p50', 'ms', 1e-3]]],
	['fanout-serial', 'fanout -n 10000 -d 5 --window 1', [
		['deliveries/s', 'deliveries_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/delivery', 'server.us_per_delivery', '', 1]]],
	['burst', 'burst -n 1000 --burst 10 -d 5', [
		['deliveries/s', 'deliveries_per_s', 'M', 1e-6],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/delivery', 'server.us_per_delivery', '', 1]]],
	['latency-100', 'fanout -n 100 --rate 100 -d 10', LATENCY],
	['latency-1000', 'fanout -n 1000 --rate 10 -d 10', LATENCY],
	['idle', 'idle -n 10000 -d 30', [
		['PSS/conn', 'server.pss_per_conn_b', 'B', 1],
		['CPU/conn/s', 'server.cpu_us_per_conn_s', 'µs', 1]]],
	['connect', 'connect -n 10000', [
		['connects/s', 'connects_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/connect', 'server.us_per_connect', '', 1]]],
	['handshake', 'handshake -n 10000', [
		['handshakes/s', 'connects_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/handshake', 'server.us_per_connect', '', 1]]],
	['api', 'api --pub-conns 8 -d 5', [
		['publishes/s', 'api_requests_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/request', 'server.us_per_request', '', 1]]],
	['channels', 'channels -n 10000 -m 1000 -d 5', [
		['deliveries/s', 'deliveries_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['p99', 'latency_us.p99', 'ms', 1e-3]]],
	['emulation', 'emulation -n 100 -d 5', [
		['commands/s', 'commands_per_s', 'k', 1e-3],
		['rotord CPU', 'server.cpu_pct', '%', 1],
		['µs/command', 'server.us_per_command', '', 1],
		['rtt p50', 'command_us.p50', 'ms', 1e-3]]],
];

// The transports a scenario runs over, of those asked for; null: it has
// no client connections (no --transport).
const EMULATION = ['http_stream', 'sse'];
function transportsOf(name, asked) {
	if (name === 'api' || name === 'handshake')
		return [null];
	if (name === 'emulation') {
		const t = asked.filter((x) => EMULATION.includes(x));
		return t.length ? t : ['http_stream'];
	}
	return asked;
}

// A kept run's file name without the run number and ".json".
function stem(c) {
	return `${c.name}${c.transport && c.transport !== 'websocket' ? `-${c.transport}` : ''}-w${c.w}-b${c.bi}-${c.reader}` +
		`${c.variant === 'plain' ? '' : `-${c.variant}`}`;
}

function args() {
	const o = { runs: 5, workers: [1, 2], only: null, rotord: ['src/rotord'],
		bench: 'contrib/bench/rotor-bench', readers: ['io_uring'], transports: ['websocket'], variants: ['plain'],
		out: null };
	const a = process.argv.slice(2);
	for (let i = 0; i < a.length; i++) {
		const v = a[i + 1];
		switch (a[i]) {
		case '--runs': o.runs = Number(v); i++; break;
		case '--workers': o.workers = v.split(',').map(Number); i++; break;
		case '--only': o.only = v.split(','); i++; break;
		case '--rotord': o.rotord = v.split(','); i++; break;
		case '--bench': o.bench = v; i++; break;
		case '--readers': o.readers = v.split(','); i++; break;
		case '--transports': o.transports = v.split(','); i++; break;
		case '--variants': o.variants = v.split(','); i++; break;
		case '--out': o.out = v; i++; break;
		case '--from': o.from = v.split(','); i++; break;
		default:
			process.stderr.write(`suite.js: unknown argument ${a[i]}\n`);
			process.exit(2);
		}
	}
	if (!(o.runs >= 1) || o.workers.some((w) => !(w >= 1)))
		throw new Error('--runs and --workers must be positive');
	if (o.readers.some((r) => !READERS[r]))
		throw new Error(`--readers: ${Object.keys(READERS).join(', ')}`);
	if (o.variants.some((v) => !VARIANTS[v]))
		throw new Error(`--variants: ${Object.keys(VARIANTS).join(', ')}`);
	return o;
}

// The generator's readers: rotor-bench arguments.
const READERS = { io_uring: [], recvmsg: ['--no-uring'] };
// The connections' variants: rotor-bench arguments.
const VARIANTS = { plain: [], tls: ['--tls'] };

function get(obj, dotted) {
	return dotted.split('.').reduce((x, k) => (x == null ? undefined : x[k]), obj);
}

function median(xs) {
	const s = [...xs].sort((a, b) => a - b);
	const m = s.length >> 1;
	return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x) {
	const a = Math.abs(x);
	return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function pins(workers) {
	return workers === 1 ? ['--cpu-server', '0', '--cpu', '1']
		: ['--cpu-server', `0-${Math.min(workers, os.cpus().length) - 1}`, '--cpu', '0-1'];
}

function main() {
	const o = args();
	const out = o.from ? null : o.out || fs.mkdtempSync(path.join(os.tmpdir(), 'rotor-suite.'));
	if (out)
		fs.mkdirSync(out, { recursive: true });
	const cases = [];
	for (const [name, cmd, metrics] of SCENARIOS) {
		if (o.only && !o.only.includes(name))
			continue;
		for (const transport of transportsOf(name, o.transports))
			for (const w of o.workers)
				for (const [bi, bin] of o.rotord.entries())
					for (const reader of o.readers)
						for (const variant of o.variants)
							cases.push({ name, cmd, metrics, transport, w, bi, bin, reader, variant, got: [] });
	}
	// --from: the tables of runs kept by earlier invocations (one rotord).
	for (const dir of o.from || []) {
		for (const f of fs.readdirSync(dir)) {
			const c = cases.find((x) => x.bi === 0 && new RegExp(
				`^${x.name}${x.transport && x.transport !== 'websocket' ? `-${x.transport}` : ''}-w${x.w}-` +
				`(b0-)?${x.reader === 'io_uring' ? '(io_uring-)?' : `${x.reader}-`}` +
				`${x.variant === 'plain' ? '' : `${x.variant}-`}\\d+\\.json$`).test(f));
			if (c)
				c.got.push(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
		}
	}
	// Round by round, every case once per round: a slow spell of the
	// machine then touches every scenario a little, not one scenario's
	// every run. The variants of one scenario (binaries, readers, TLS) run back
	// to back and take turns going first: here the second of two such runs
	// was measurably slower (BENCHMARKS.md, "Transports").
	const groups = [];
	for (const c of cases) {
		const g = groups[groups.length - 1];
		if (g && g[0].name === c.name && g[0].transport === c.transport && g[0].w === c.w)
			g.push(c);
		else
			groups.push([c]);
	}
	for (let r = 1; r <= (o.from ? 0 : o.runs); r++) {
		for (const c of groups.flatMap((g) => g.map((_, k) => g[(k + r - 1) % g.length]))) {
			const argv = [...c.cmd.split(' '), '--rotord', c.bin, '--workers', String(c.w), ...pins(c.w),
				...READERS[c.reader], ...VARIANTS[c.variant], ...(c.transport ? ['--transport', c.transport] : []),
				'-q'];
			process.stderr.write(`${c.name} ${c.transport || ''} w${c.w} ${c.reader} ${c.variant} run ${r}/${o.runs}: ` +
				`${o.bench} ${argv.join(' ')}\n`);
			const p = spawnSync(o.bench, argv, { encoding: 'utf8', maxBuffer: 1 << 24 });
			const line = (p.stdout || '').trim().split('\n').pop();
			if (p.status !== 0 || !line) {
				process.stderr.write(`  failed (status ${p.status}): ${(p.stderr || '').trim().split('\n').pop()}\n`);
				continue;
			}
			fs.writeFileSync(path.join(out, `${stem(c)}-${r}.json`), line + '\n');
			c.got.push(JSON.parse(line));
		}
	}
	const many = o.rotord.length > 1, readers = o.readers.length > 1, variants = o.variants.length > 1;
	const tcol = cases.some((c) => c.transport && c.transport !== 'websocket');
	if (!o.from)
		console.log(`Runs kept in ${out}\n`);
	console.log(`| scenario |${tcol ? ' transport |' : ''} workers |${many ? ' rotord |' : ''}${readers ? ' reads |' : ''}` +
		`${variants ? ' variant |' : ''} runs | median (min–max) |`);
	console.log(`| --- |${tcol ? ' --- |' : ''} --- |${many ? ' --- |' : ''}${readers ? ' --- |' : ''}` +
		`${variants ? ' --- |' : ''} --- | --- |`);
	for (const c of cases) {
		if (o.from && c.got.length === 0)
			continue;       // a worker count the kept runs do not have
		const cells = c.metrics.map(([label, key, unit, scale]) => {
			const xs = c.got.map((j) => get(j, key) * scale).filter(Number.isFinite);
			if (xs.length === 0)
				return `${label}: -`;
			return `${label} **${fmt(median(xs))}${unit}** (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
		});
		const other = c.got.filter((j) => get(j, 'generator.reads') !== c.reader).length;
		const runs = (o.from ? `${c.got.length}` : `${c.got.length}/${o.runs}`) +
			(other ? ` (${other} not read by ${c.reader})` : '');
		console.log(`| ${c.name} |${tcol ? ` ${c.transport || '-'} |` : ''} ${c.w} |${many ? ` ${c.bin} |` : ''}` +
			`${readers ? ` ${c.reader} |` : ''}${variants ? ` ${c.variant} |` : ''} ${runs} | ${cells.join('; ')} |`);
	}
}

main();
