"""Session: prepare a graph once (kernel choice, shapes, memory plan), then run it.

Plan, then run: graph -> passes -> shape inference -> kernel choice per op -> memory plan.
resize() re-infers shapes and re-plans memory; kernels keep their packed weights.

Shape plans (every tensor's shape and its place in the arena) are cached per input
shapes, the last PLAN_CACHE of them: a run whose inputs differ from the current shapes
only on dynamic axes (an ONNX ``dim_param``, or ``GraphBuilder.input(dynamic_axes=)``)
switches to that plan without a resize() call. Switching re-plans the kernels (geometry
and scratch sizes, no compiling); the arena and scratch only grow on such a switch, so
alternating batch sizes do not reallocate, while an explicit resize() sizes them exactly.

Threads: ``run`` may be called from several threads at once. Each call takes a workspace
(an arena and a scratch buffer) from the session's pool, or makes one when all are busy,
so concurrent runs never share activation memory; info() counts every workspace. The
kernels' geometry is shared, so a run at other input shapes waits until the runs in flight
finish, then switches the plan (runs at the current shapes that arrive meanwhile wait
behind it, so a switch is not starved). Under Numba's workqueue layer, which cannot run
two parallel regions at once, runs are serialized process-wide (runtime/threads.py).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from contextlib import ExitStack
from types import SimpleNamespace

import numpy as np

from jitconv.backends import Kernel, OpContext, default_registry
from jitconv.backends.base import HostMemory
from jitconv.errors import ConfigError, GraphError, InputError, InternalError, JitconvError
from jitconv.progress import CompileProgress
from jitconv.progress import wanted as wanted_progress

from .config import Config
from .info import OpInfo, SessionInfo, op_flops
from .limits import check_bytes
from .passes import optimize
from .ir import Node
from .planner import Interval, plan
from .profile import Profile
from .inplace import views_in_place
from .resident import (CompilerPageWatch, release_arrays, release_compiler_pages, rss_bytes,
                       settle, warm_loader)
from .shapes import infer_shapes
from .target import describe as describe_target
from .threads import select_layer
from .threads import describe as describe_threads


def _base(arr):
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


PLAN_CACHE = 8     # shape plans kept per session (bounded: each holds its tensor views)


class _ShapePlan:
    """Everything that depends on the input shapes but not on the kernels' weights: each
    tensor's shape, and its offset in the arena of the memory it lives in."""
    __slots__ = ("key", "input_shapes", "shapes", "intervals", "offsets", "arena_bytes",
                 "inside", "skip")

    def views_on(self, arenas, memories, where):
        views = {iv.name: memories[where[iv.name]].view(
                     arenas[where[iv.name]], self.offsets[iv.name], iv.nbytes,
                     self.shapes[iv.name]) for iv in self.intervals}
        for t, (root, off, nbytes) in self.inside.items():     # slices of a Concat's output
            views[t] = memories[where[root]].view(arenas[where[root]],
                                                  self.offsets[root] + off, nbytes,
                                                  self.shapes[t])
        return views


class _Workspace:
    """One run's activation arenas and scratch buffers (one of each per memory: the host
    and each device backend's), with its tensor views per shape plan."""
    __slots__ = ("memories", "arenas", "scratches", "views")

    def __init__(self, memories, need):
        self.memories, self.views = memories, {}
        self.arenas = {m: memories[m].allocate(a) for m, (a, _) in need.items()}
        self.scratches = {m: memories[m].allocate(b) for m, (_, b) in need.items()}

    def fit(self, need, exact=False):
        """Reallocate what is too small (or, when ``exact``, any part of another size)."""
        for m, (arena, scratch) in need.items():
            have = self.arenas[m].nbytes
            if have < arena or (exact and have != arena):
                self.arenas[m], self.views = self.memories[m].allocate(arena), {}
            have = self.scratches[m].nbytes
            if have < scratch or (exact and have != scratch):
                self.scratches[m] = self.memories[m].allocate(scratch)

    def nbytes(self):
        return (sum(int(a.nbytes) for a in self.arenas.values()),
                sum(int(b.nbytes) for b in self.scratches.values()))

    def views_for(self, p, where):
        v = self.views.get(p.key)
        if v is None:
            while len(self.views) >= PLAN_CACHE:
                self.views.pop(next(iter(self.views)))
            v = self.views[p.key] = p.views_on(self.arenas, self.memories, where)
        return v


def _key(input_shapes):
    return tuple(sorted((k, tuple(v)) for k, v in input_shapes.items()))


class _Copy(Kernel):
    """A copy between the host and a device backend's memory, inserted by the session
    where a tensor is read in another memory than the one it was written in."""
    storage = "-"

    def __init__(self, memory, to_device, src, space):
        self.memory, self.to_device = memory, to_device
        self.name = "copy_to_" + (space if to_device else "host")
        self.reason = f"{src!r} is read by an op on another backend"

    def run(self, inputs, outputs, scratch):
        if self.to_device:
            self.memory.to_device(inputs[0], outputs[0])
        else:
            self.memory.to_host(inputs[0], outputs[0])


class _Step:
    __slots__ = ("node", "kernel", "backend", "note", "inputs", "outputs", "scratch_bytes",
                 "space", "owned_arrays")

    @property
    def reason(self):
        """Why this kernel: the session's note (fallback, fusion), then the kernel's own
        reason as of the current plan (a conv's family is chosen per shape)."""
        return self.note + self.kernel.reason


class Session:
    """Runs a Graph with a Config.

    Parameters
    ----------
    graph : Graph
        From GraphBuilder.build() (or an importer). It is not modified.
    config : Config, optional
        Backend, threads, precision and memory mode; defaults to Config().
    registry : Registry, optional
        Where backends are looked up (and the config's backend names checked); defaults to
        jitconv's default registry.
    target : Target, optional
        The hardware facts kernel choice reads (``jitconv.Target``); defaults to what the
        main backend reports for this machine. Tests set it to see other machines' choices.

    Examples
    --------
    >>> import numpy as np, jitconv as jc
    >>> g = jc.GraphBuilder()
    >>> x = g.input("x", (1, 2, 4, 4))
    >>> g.output(g.relu(x), "y")
    >>> sess = jc.Session(g.build(), jc.Config(threads=1))
    >>> sess.run(-np.ones((1, 2, 4, 4), np.float32))["y"].max()
    0.0
    """

    def __init__(self, graph, config: Config | None = None, *, registry=None, target=None):
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise JitconvError(f"config must be a jitconv.Config, got {type(config).__name__}")
        self.config = config
        select_layer(config.threading_layer)
        self._registry = registry or default_registry
        graph = optimize(graph)
        for spec in graph.inputs:
            if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in spec.shape):
                raise InputError(f"input {spec.name!r} has shape {tuple(spec.shape)}: every "
                                 f"axis needs a size (a non-negative int) to plan a session")
        self._input_shapes = {s.name: tuple(int(d) for d in s.shape) for s in graph.inputs}
        self._dynamic = {s.name: tuple(s.dynamic) for s in graph.inputs}
        self._main, self._backup = self._pick_backends()
        self._targets = {b.name: (target if target is not None and b is self._main
                                  else b.target_for(config)) for b in (self._main, self._backup)}
        if config.layout == "auto" and self._main.graph_pass is not None:
            graph = self._main.graph_pass(graph, config, self._targets[self._main.name])
        shapes = infer_shapes(graph, self._input_shapes)
        big = max(shapes, key=lambda t: math.prod(shapes[t]), default=None)
        if big is not None:       # before kernel choice, which plans for these sizes
            check_bytes(4 * math.prod(shapes[big]),
                        f"Session() at input shapes {self._input_shapes}: tensor {big!r} of "
                        f"shape {shapes[big]}")
        # LLVM's first-load pages touched before any weight is packed, and dropped before
        # and after (runtime/resident.py)
        release_compiler_pages()
        warm_loader()
        release_compiler_pages()
        self._steps = [self._choose_kernel(graph, node, shapes) for node in graph.nodes]
        self._held = self._held_constants(graph)
        self._route({o.name for o in graph.outputs})
        self._ran = False   # a run finished: later runs show no compile progress
        # NOTE: keep the structure, not the constants: weights live only in what the
        # kernels kept (weight_bytes counts exactly those arrays)
        self.graph = SimpleNamespace(
            name=graph.name, inputs=graph.inputs, outputs=graph.outputs, nodes=graph.nodes,
            fixed_input_shapes=graph.fixed_input_shapes,
            constants={k: SimpleNamespace(shape=c.shape) for k, c in graph.constants.items()})
        self._plan(shapes)     # kernels choose and pack for these shapes here
        # the weights are packed: give back what packing left resident (runtime/resident.py)
        settle(graph)
        self._rss_at_prepare = rss_bytes()

    # -- preparation -------------------------------------------------------------------

    def _pick_backends(self):
        reg = self._registry
        name = self.config.backend
        for field, value in (("backend", name), ("backup", self.config.backup)):
            if value not in reg and not (field == "backend" and value == "auto"):
                raise ConfigError(f"Config.{field}={value!r}: unknown backend {value!r}; "
                                  f"registered backends: {', '.join(reg.names()) or '(none)'}")
        if name == "auto":
            name = next((n for n in ("cuda", "cpu") if n in reg and reg.get(n).is_available()),
                        "cpu")
        main = reg.get(name)
        if not main.is_available():
            raise JitconvError(f"backend {name!r} is registered but not available on this "
                               f"machine; use Config(backend='cpu') or 'auto'")
        backup = reg.get(self.config.backup)
        return main, backup

    def _context(self, graph, node, shapes):
        consts = {i: graph.constants[t] for i, t in enumerate(node.inputs)
                  if t in graph.constants}
        return OpContext(node, [shapes[t] if t else None for t in node.inputs],
                         [shapes[t] for t in node.outputs], consts, self.config)

    def _create(self, backend, ctx):
        creator = backend.creator(ctx.node.op_type)
        if creator is None:
            return None
        ctx.target = self._targets[backend.name]
        try:
            return creator(ctx)
        except JitconvError:
            raise
        except Exception as exc:
            raise InternalError(f"{ctx.node.describe()}: backend {backend.name!r} failed to "
                                f"create a kernel: {type(exc).__name__}: {exc}") from exc

    def _choose_kernel(self, graph, node, shapes):
        ctx = self._context(graph, node, shapes)
        step = _Step()
        step.node, step.backend = node, self._main.name
        kernel = self._create(self._main, ctx)
        note = ""
        if kernel is None and self._backup is not self._main:
            had = self._main.creator(node.op_type) is not None
            note = (f"{self._main.name} declined; " if had else
                    f"{self._main.name} has no {node.op_type} kernel; ") + f"ran on {self._backup.name}: "
            kernel = self._create(self._backup, ctx)
            step.backend = self._backup.name
        if kernel is None:
            raise GraphError(f"{node.describe()}: no registered backend runs op "
                             f"{node.op_type!r} (tried {self._main.name!r} and backup "
                             f"{self._backup.name!r})")
        fused = node.attr("_fused", [])
        if fused:
            note += f"fused {', '.join(fused)}; "
        step.kernel, step.note = kernel, note
        # the arrays of the constants the kernel packs (now, or when planned): their file
        # pages can go once it has, before the next kernel packs (runtime/resident.py)
        step.owned_arrays = [a for i, c in ctx.constants.items() if i in kernel.owned_inputs
                             for a in (c.data, getattr(c, "scale", None),
                                       getattr(c, "zero", None))]
        release_arrays(step.owned_arrays)
        # owned constants were captured by the kernel: they are not passed at run time
        step.inputs = [t if i not in kernel.owned_inputs else ""
                       for i, t in enumerate(node.inputs)]
        step.outputs = list(node.outputs)
        return step

    def _held_constants(self, graph):
        """Constants passed to kernels at run time (those no kernel packed for itself)."""
        held = {}
        for step in self._steps:
            for i, t in enumerate(step.node.inputs):
                if t in graph.constants and i not in step.kernel.owned_inputs:
                    if t not in held:
                        held[t] = graph.constants[t].as_float32()
        return held

    def _route(self, graph_outputs):
        """Give every step the memory its backend's kernels use, and insert copies where a
        tensor is read in another memory than the one it was written in.

        Graph inputs, held constants and outputs live on the host; so does everything
        between host backends (the CPU's zero-copy path: no copy step at all). A device
        backend's tensors live in its own arena; where a host op reads one (an op its
        backend declined, run on the backup) the session copies it to the host first, and
        back the other way. ``self._where`` maps each arena tensor to its memory and
        ``self._alias`` each copy to the tensor it copies."""
        used = {self._main.name: self._main, self._backup.name: self._backup}
        self._memories = {"host": HostMemory()}
        self._contexts = [b for b in used.values()]
        for b in used.values():
            if not b.memory.host:
                self._memories[b.name] = b.memory
        self._where, self._alias = {}, {}
        at = {}                          # tensor -> {memory: name of its copy there}
        routed = []

        def copy(t, src, dst, before):
            name = f"{t}@{dst}"
            mem = self._memories[dst if dst != "host" else src]
            step = _Step()
            step.node = Node("Copy", [at[t][src]], [name], {}, f"copy {t} to {dst}")
            step.kernel = _Copy(mem, dst != "host", t, dst)
            step.backend, step.note, step.space = (dst if dst != "host" else src), "", dst
            step.inputs, step.outputs = [at[t][src]], [name]
            before.append(step)
            at[t][dst] = name
            self._where[name] = dst
            self._alias[name] = t

        for step in self._steps:
            backend = used[step.backend]
            step.space = "host" if backend.memory.host else backend.name
            pre = []
            ins = []
            for t in step.inputs:
                if t and t in at and step.space not in at[t]:
                    src = "host" if "host" in at[t] else next(iter(at[t]))
                    if src != "host" and step.space != "host":
                        copy(t, src, "host", pre)
                        src = "host"
                    copy(t, src, step.space, pre)
                ins.append(at[t][step.space] if t and t in at else t)
            step.inputs = ins
            routed.extend(pre)
            routed.append(step)
            outs = []
            for t in step.outputs:
                name = t if step.space == "host" or t not in graph_outputs else f"{t}@{step.space}"
                at[t] = {step.space: name}
                if name != t:
                    self._alias[name] = t
                if t not in graph_outputs or name != t:
                    self._where[name] = step.space
                outs.append(name)
            step.outputs = outs
            for t in step.outputs:
                if t != self._alias.get(t, t):       # a graph output written on a device
                    orig = self._alias[t]
                    after = []
                    mem = self._memories[step.space]
                    c = _Step()
                    c.node = Node("Copy", [t], [orig], {}, f"copy {orig} to host")
                    c.kernel = _Copy(mem, False, orig, "host")
                    c.backend, c.note, c.space = step.backend, "", "host"
                    c.inputs, c.outputs = [t], [orig]
                    after.append(c)
                    at[orig]["host"] = orig
                    routed.extend(after)
        self._steps = routed

    def _plan(self, shapes):
        """The first plan (shapes already inferred for the graph's own input shapes)."""
        self._plans = OrderedDict()
        self._cond = threading.Condition()
        self._inflight = 0         # runs holding a workspace
        self._switching = 0        # runs waiting to switch the plan (new runs queue behind)
        self._pool, self._free = [], []    # every workspace; those not in use
        self._need = {m: (0, 0) for m in self._memories}
        self._kernels_at = self._current = None
        self._use(self._shape_plan(self._input_shapes, shapes, what="Session()"), exact=True)

    def _shape_plan(self, input_shapes, shapes=None, what="Session.run"):
        """The cached plan for these input shapes, or a new one (least recent dropped).

        Its activation memory is checked against what the machine can give first."""
        key = _key(input_shapes)
        p = self._plans.get(key)
        if p is not None:
            self._plans.move_to_end(key)
            return p
        if shapes is None:
            shapes = infer_shapes(self.graph, input_shapes)
        shapes = dict(shapes)
        shapes.update({a: shapes[t] for a, t in self._alias.items()})
        last_use = {}
        for i, step in enumerate(self._steps):
            for t in step.inputs:
                last_use[t] = i
        inside, skip = views_in_place(self._steps, self._where, shapes)
        span = {}
        for i, step in enumerate(self._steps):
            for t in step.outputs:
                if t in self._where:
                    root = inside[t][0] if t in inside else t
                    first, last = span.get(root, (i, i))
                    span[root] = (min(first, i), max(last, i, last_use.get(t, i)))
        intervals = {m: [] for m in self._memories}
        for i, step in enumerate(self._steps):
            for t in step.outputs:
                if t in self._where and t not in inside:
                    intervals[self._where[t]].append(
                        Interval(t, 4 * math.prod(shapes[t]), *span[t]))
        out_bytes = sum(4 * math.prod(shapes[o.name]) for o in self.graph.outputs)
        offsets, arena_bytes = {}, {}
        for m, ivs in intervals.items():
            off, arena_bytes[m] = plan(ivs)
            offsets.update(off)
        check_bytes(sum(arena_bytes.values()) + out_bytes,
                    f"{what} at input shapes {dict(input_shapes)} (an activation arena of "
                    f"{sum(arena_bytes.values()):,} bytes and outputs of {out_bytes:,} bytes)")
        p = _ShapePlan()
        p.key, p.input_shapes, p.shapes = key, dict(input_shapes), shapes
        p.intervals = [iv for ivs in intervals.values() for iv in ivs]
        p.offsets, p.arena_bytes = offsets, arena_bytes
        p.inside, p.skip = inside, skip
        self._plans[key] = p
        while len(self._plans) > PLAN_CACHE:
            self._plans.popitem(last=False)
        return p

    def _use(self, p, *, exact):
        """Make ``p`` the current plan: kernels re-planned, workspaces big enough (one,
        exactly sized, when ``exact``; else the free ones grown). Called with no run in
        flight (under self._cond once the session exists)."""
        if self._kernels_at != p.key:
            before = self._current if self._kernels_at else None
            self._kernels_at = None           # half re-planned kernels are no plan at all
            try:
                self._plan_kernels(p.shapes)
                need = self._workspace_need(p, exact)
            except BaseException:
                if before is not None:        # back to the plan the session was at
                    self._plan_kernels(before.shapes)
                    self._kernels_at = before.key
                raise
            self._kernels_at = p.key
        else:
            need = self._workspace_need(p, exact)
        self._need = need
        if exact:
            ws = self._free[0] if self._free else None
            if ws is None:
                ws = _Workspace(self._memories, need)
            ws.fit(need, exact=True)
            self._pool, self._free = [ws], [ws]
        else:
            for ws in self._free:
                ws.fit(need)
        self._current = p
        if p.key in self._plans:
            self._plans.move_to_end(p.key)
        self._shapes = p.shapes
        self._input_shapes = dict(p.input_shapes)

    def _workspace_need(self, p, exact):
        """{memory: (arena, scratch) bytes} a workspace needs at plan ``p``, checked
        against what the machine can give (the growth of the free workspaces)."""
        need = {m: (p.arena_bytes[m], max((st.scratch_bytes for st in self._steps
                                           if st.space == m), default=0))
                for m in self._memories}
        if exact or not self._free:
            grow = sum(a + b for a, b in need.values())
        else:
            ws = self._free[0]
            grow = len(self._free) * sum(
                max(0, a - ws.arenas[m].nbytes) + max(0, b - ws.scratches[m].nbytes)
                for m, (a, b) in need.items())
        arena = sum(a for a, _ in need.values())
        scratch = sum(b for _, b in need.values())
        check_bytes(grow, f"input shapes {p.input_shapes} (arena {arena:,} bytes, "
                          f"kernel scratch {scratch:,} bytes per workspace)")
        return need

    def _plan_kernels(self, shapes):
        watch = CompilerPageWatch()     # packing loads kernels too
        for step in self._steps:
            ins = [shapes[t] if t else None for t in step.node.inputs]
            outs = [shapes[t] for t in step.node.outputs]
            step.scratch_bytes = int(step.kernel.resize(ins, outs))
            self._check_scratch(step, outs)
            release_arrays(getattr(step, "owned_arrays", ()))
            step.owned_arrays = ()
            watch()

    @staticmethod
    def _check_scratch(step, out_shapes):
        produces = any(math.prod(s) > 0 for s in out_shapes)
        if step.scratch_bytes < 0 or (produces and step.scratch_bytes == 0
                                      and step.kernel.needs_scratch()):
            raise InternalError(f"{step.node.describe()}: kernel {step.kernel.name!r} asked "
                                f"for a scratch buffer of {step.scratch_bytes} bytes but must "
                                f"produce outputs of shapes {out_shapes}")

    def resize(self, input_shapes: dict) -> None:
        """Change input shapes; shapes and the memory plan are redone, weights are kept.

        Waits for runs in flight (other threads) to finish first."""
        with self._cond:
            new = dict(self._input_shapes)
            for name, shape in input_shapes.items():
                if name not in new:
                    raise InputError(f"resize: unknown input {name!r}; inputs are "
                                     f"{', '.join(map(repr, new))}")
                shape = tuple(int(d) for d in shape)
                if len(shape) != len(new[name]) or any(d < 0 for d in shape):
                    raise InputError(f"resize: input {name!r} needs a {len(new[name])}-D shape "
                                     f"of non-negative sizes, got {shape}")
                new[name] = shape
            if self.graph.fixed_input_shapes and new != self._input_shapes:
                raise InputError(f"resize: graph {self.graph.name!r} computes shapes that were "
                                 f"folded for input shapes {self._input_shapes} at import; "
                                 f"re-import it with jc.load(path, input_shapes={new})")
            self._switching += 1
            try:
                while self._inflight:
                    self._cond.wait()
                self._use(self._shape_plan(new, what="Session.resize"), exact=True)
            finally:
                self._switching -= 1
                self._cond.notify_all()

    # -- running -----------------------------------------------------------------------

    def _check_feeds(self, feeds):
        """{name: array} checked against the inputs (names, dtypes, static axes)."""
        if isinstance(feeds, np.ndarray):
            if len(self._input_shapes) != 1:
                raise InputError(f"this graph has {len(self._input_shapes)} inputs "
                                 f"({', '.join(map(repr, self._input_shapes))}); pass a dict")
            feeds = {next(iter(self._input_shapes)): feeds}
        if not isinstance(feeds, dict):
            raise InputError(f"run() takes a dict of input name -> numpy array (or one array), "
                             f"got {type(feeds).__name__}")
        unknown = set(feeds) - set(self._input_shapes)
        missing = set(self._input_shapes) - set(feeds)
        if unknown or missing:
            raise InputError(f"inputs do not match the graph: unknown {sorted(unknown)}, "
                             f"missing {sorted(missing)}; expected "
                             f"{', '.join(map(repr, self._input_shapes))}")
        for name, arr in feeds.items():
            want = self._input_shapes[name]
            if not isinstance(arr, np.ndarray):
                raise InputError(f"input {name!r} must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != np.float32:
                raise InputError(f"input {name!r} has dtype {arr.dtype}, expected float32 "
                                 f"(use arr.astype(np.float32))")
            if tuple(arr.shape) != want:
                self._check_dynamic(name, tuple(arr.shape), want)
        new = {k: tuple(a.shape) for k, a in feeds.items()}
        if new != self._input_shapes and self.graph.fixed_input_shapes:
            raise InputError(f"graph {self.graph.name!r} computes shapes that were folded "
                             f"for input shapes {self._input_shapes} at import, so it "
                             f"cannot run at {new}; re-import it with "
                             f"jc.load(path, input_shapes={new})")
        return feeds, new

    def _check_dynamic(self, name, got, want):
        """A shape that differs from the current one only on dynamic axes is accepted."""
        dyn = self._dynamic.get(name, ())
        fixed = [a for a in range(len(want)) if a not in dyn]
        if len(got) == len(want) and dyn and all(got[a] == want[a] for a in fixed):
            return
        hint = f"call Session.resize({{{name!r}: shape}}) to change it"
        if dyn:
            free = ", ".join(map(str, dyn))
            hint = (f"only axis {free} may change from run to run" if len(dyn) == 1 else
                    f"only axes {free} may change from run to run") + "; " + hint
        raise InputError(f"input {name!r} has shape {got}, expected {want} float32; {hint}")

    def _begin(self, feeds):
        """Check ``feeds``, switch the plan if their shapes need it, take a workspace.

        Returns (plan, workspace, feeds); the caller must hand the workspace back with
        _end(). A switch waits until no run is in flight; runs at the current shapes wait
        while a switch is waiting."""
        with self._cond:
            while True:
                feeds, new = self._check_feeds(feeds)
                if new == self._input_shapes:
                    if not self._switching:
                        break
                    self._cond.wait()
                elif self._inflight:
                    self._switching += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._switching -= 1
                else:
                    try:
                        self._use(self._shape_plan(new), exact=False)
                    finally:
                        self._cond.notify_all()
                    break
            if self._free:
                ws = self._free.pop()
                ws.fit(self._need)
            else:
                ws = _Workspace(self._memories, self._need)
                self._pool.append(ws)
            self._inflight += 1
            p = self._current
        try:
            return p, ws, {k: np.ascontiguousarray(a) for k, a in feeds.items()}
        except BaseException:
            self._end(ws)
            raise

    def _end(self, ws):
        with self._cond:
            self._inflight -= 1
            self._free.append(ws)
            self._cond.notify_all()

    def _run(self, feeds, progress=None, samples=None):
        p, ws, feeds = self._begin(feeds)
        made = None
        if progress is None and not self._ran and wanted_progress(self.config):
            # the first run compiles what this process has not: a bar if it is slow
            progress = made = CompileProgress(f"jitconv {self.graph.name}: first run")
        try:
            watch = None if self._ran else CompilerPageWatch()
            out = self._execute(p, ws, feeds, progress, samples, watch=watch)
            if not self._ran:
                # the first run compiled or loaded this session's kernels: LLVM is done
                self._ran = True
                release_compiler_pages()
            return out
        finally:
            if made is not None:
                made.close()        # also when the run failed: no bar left ticking
            self._end(ws)

    def run(self, feeds) -> dict:
        """Run the graph; returns {output name: new float32 array}.

        Safe to call from several threads at once (see the module docstring)."""
        return self._run(feeds)

    def _zeros(self):
        return {k: np.zeros(s, np.float32) for k, s in self.input_shapes.items()}

    def warmup(self, progress=None) -> None:
        """Run once on zeros so every kernel compiles (or loads from Numba's cache).

        ``progress(i, n, op_info)`` is called before each op (op_info None at the end);
        by default a tqdm bar appears when this takes over a second (jitconv.progress).
        """
        self._run(self._zeros(), progress)

    def warm_kernels(self, kernels) -> dict:
        """Run only the ops whose kernel is in ``kernels`` (names, or (name, storage) pairs
        as runtime/compile.kernel_key gives), once, on zero inputs (the other ops' outputs
        are left as the arena holds them), so those kernels compile. Returns {(name,
        storage): seconds its ops took}. runtime/compile.py splits the kernels of sessions
        this way between processes."""
        from .compile import kernel_key
        want = set(kernels)
        only = {i for i, step in enumerate(self._steps)
                if step.kernel.name in want or kernel_key(step) in want}
        samples = [[] for _ in self._steps]
        p, ws, feeds = self._begin(self._zeros())
        try:
            self._execute(p, ws, feeds, None, samples, only=only)
        finally:
            self._end(ws)
        times = {}
        for step, took in zip(self._steps, samples):
            if took:
                key = kernel_key(step)
                times[key] = times.get(key, 0.0) + took[0]
        return times

    def profile(self, feeds=None, runs: int = 10) -> Profile:
        """Time every op over ``runs`` runs (after one warm-up run) and return the per-op
        medians. ``feeds`` as for run(); zeros of the input shapes when None."""
        if runs < 1:
            raise ConfigError(f"profile: runs must be >= 1, got {runs}")
        if feeds is None:
            feeds = self._zeros()
        p, ws, feeds = self._begin(feeds)
        try:
            self._execute(p, ws, feeds, None)
            samples = [[] for _ in self._steps]
            totals = []
            for _ in range(runs):
                t0 = time.perf_counter()
                self._execute(p, ws, feeds, None, samples)
                totals.append(time.perf_counter() - t0)
        finally:
            self._end(ws)
        return Profile.from_samples(self.config.label(), self.info().ops, samples, totals)

    def _execute(self, p, ws, feeds, progress, samples=None, only=None, watch=None):
        buffers = dict(ws.views_for(p, self._where))
        buffers.update(self._held)
        buffers.update(feeds)
        results = {}
        for spec in self.graph.outputs:
            if spec.name in buffers:      # an input or constant returned as it is
                results[spec.name] = np.array(buffers[spec.name], dtype=np.float32)
            else:
                results[spec.name] = buffers[spec.name] = np.empty(p.shapes[spec.name],
                                                                   np.float32)
        scratch = {m: self._memories[m].scratch(b) for m, b in ws.scratches.items()}
        what = f"Session({self.graph.name!r}).run"
        # each backend's run context (the CPU's: fork guard and thread count) around the run
        if len(self._contexts) == 1:
            with self._contexts[0].context(self.config, what):
                self._run_steps(buffers, scratch, progress, samples, only, p.skip, watch)
        else:
            with ExitStack() as stack:
                for backend in self._contexts:
                    stack.enter_context(backend.context(self.config, what))
                self._run_steps(buffers, scratch, progress, samples, only, p.skip, watch)
        return results

    def _run_steps(self, buffers, scratch, progress, samples, only, skip=(), watch=None):
        """Run the steps (those in ``only``, when given); ``watch`` (a first run's
        CompilerPageWatch) is called after each."""
        ops = self.info().ops if progress else None
        for i, step in enumerate(self._steps):
            if only is not None and i not in only:
                continue
            if i in skip:           # a Concat whose inputs were written in place
                if samples is not None:
                    samples[i].append(0.0)
                continue
            if progress:
                progress(i, len(self._steps), ops[i])
            ins = [buffers[t] if t else None for t in step.inputs]
            outs = [buffers[t] for t in step.outputs]
            if samples is None:
                step.kernel.run(ins, outs, scratch[step.space])
            else:
                t0 = time.perf_counter()
                step.kernel.run(ins, outs, scratch[step.space])
                samples[i].append(time.perf_counter() - t0)
            if watch is not None:
                watch()
        if progress:
            progress(len(self._steps), len(self._steps), None)

    # -- reporting ---------------------------------------------------------------------

    def info(self) -> SessionInfo:
        """Memory split, FLOPs and per-op kernel choices (text via str(), HTML in Jupyter)."""
        arrays = list(self._held.values())
        for step in self._steps:
            arrays.extend(step.kernel.held_arrays())
        unique = {id(_base(a)): _base(a).nbytes for a in arrays}
        ops, flops = [], 0
        skip = self._current.skip if self._current is not None else ()
        for i, step in enumerate(self._steps):
            node = step.node
            ins = [self._shapes[t] if t else None for t in node.inputs]
            outs = [self._shapes[t] for t in node.outputs]
            f = 0 if isinstance(step.kernel, _Copy) else op_flops(node, ins, outs)
            flops += f
            held = {id(_base(a)): _base(a).nbytes for a in step.kernel.held_arrays()}
            reason = step.reason + (("; in place: its inputs are written into their slices "
                                     "of the output, nothing is copied")
                                    if i in skip and node.op_type == "Concat" else
                                    "; in place: a view of its input, nothing is copied"
                                    if i in skip else "")
            ops.append(OpInfo(node.name, node.op_type, step.backend, step.kernel.name,
                              step.kernel.storage, reason, outs[0], f, step.scratch_bytes,
                              sum(held.values())))
        pool = [ws.nbytes() for ws in self._pool]
        return SessionInfo(self.config, sum(unique.values()), sum(a for a, _ in pool),
                           sum(b for _, b in pool), flops, tuple(ops),
                           describe_threads(), len(pool), describe_target(),
                           self._rss_at_prepare)

    @property
    def input_shapes(self) -> dict:
        """{input name: shape} the session is planned for now."""
        return dict(self._input_shapes)

    def __repr__(self) -> str:
        return f"Session({self.graph.name!r}, {self.config.label()})"
