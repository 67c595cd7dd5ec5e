"""Turn a ROS 2 XML launch file into the command lines `ros2 launch` would start (no `launch` needed).

ROS 2 `launch`/`launch_ros` are not installable from PyPI (ROS 2 from wheels, README), so tests and
launch-less machines use this reader to start exactly what a shipped XML launch file describes. It
understands the declarative subset the project's launch files keep to:

  <arg name default>  <let name value>  <group scoped> + <push-ros-namespace namespace>
  <include file> + <arg name value>     <node pkg exec name namespace args> + <param from>,
  <param name value>, <remap from to>, <env name value>   <executable cmd> + <env name value>
  `if` / `unless` on every element
  substitutions $(var x), $(find-pkg-share p), $(env NAME [default]), $(dirname)

Anything else raises ValueError, so a launch file that leaves the subset fails its tests instead of
being half-read. Command line (print what a launch file would run):

  python -m hand_recon_ros.tools.launch_reader launch/hand_recon.launch.xml camera:=/cam device:=cpu
"""

import os
import re
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

__all__ = ['LaunchProcess', 'read_launch_file', 'node_commands', 'find_package_share', 'resolve_executable', 'as_bool']

_SUBST = re.compile(r'\$\(\s*([a-z][a-z0-9_-]*)((?:\s+[^()\s]+)*)\s*\)')
_ALLOWED = {
    'arg': {'name', 'default', 'description', 'if', 'unless'},
    'let': {'name', 'value', 'if', 'unless'},
    'group': {'scoped', 'if', 'unless'},
    'push-ros-namespace': {'namespace', 'if', 'unless'},
    'include': {'file', 'if', 'unless'},
    'node': {'pkg', 'exec', 'name', 'namespace', 'args', 'output', 'respawn', 'if', 'unless'},
    'executable': {'cmd', 'name', 'output', 'if', 'unless'},
}


@dataclass
class LaunchProcess:
    """One process a launch file starts. ``argv`` is ready for subprocess; ``found`` says whether
    argv[0] was resolved to an existing executable on this machine (e.g. rviz2 is not, here)."""

    kind: str  # 'node' or 'executable'
    argv: list
    found: bool
    package: str = ''
    executable: str = ''
    name: str = ''
    namespace: str = '/'
    params: list = field(default_factory=list)  # ('file', path) or ('value', name, value), in order
    remaps: list = field(default_factory=list)  # (from, to)
    env: dict = field(default_factory=dict)  # <env> children: set on top of the launching environment

    @property
    def command(self) -> str:
        """A shell line: the <env> settings, then the command."""
        return ' '.join([*(f'{k}={shlex.quote(v)}' for k, v in self.env.items()), shlex.join(self.argv)])


def as_bool(text: object, what: str = 'condition') -> bool:
    """launch's truthiness: 'true'/'1' and 'false'/'0' (any case); anything else is an error."""
    value = str(text).strip().lower()
    if value in ('true', '1'):
        return True
    if value in ('false', '0'):
        return False
    raise ValueError(f'{what} must be true/false (or 1/0), got {text!r}')


def find_package_share(package: str, package_shares: Mapping[str, str | Path] | None = None) -> Path:
    """share/<package> like $(find-pkg-share): explicit mapping, AMENT_PREFIX_PATH, then this venv."""
    if package_shares and package in package_shares:
        return Path(package_shares[package])
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        share = Path(prefix) / 'share' / package
        marker = Path(prefix) / 'share' / 'ament_index' / 'resource_index' / 'packages' / package
        if marker.exists() or (share / 'package.xml').exists():
            return share
    raise ValueError(
        f'$(find-pkg-share {package}): package not found in AMENT_PREFIX_PATH or {sys.prefix} '
        f'(build/install it, or source its setup file)'
    )


def resolve_executable(package: str, executable: str) -> str | None:
    """Like `ros2 run`: <prefix>/lib/<pkg>/<exec> (colcon layout), then this venv's bin, then PATH."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    candidates = [Path(p) / 'lib' / package / executable for p in prefixes] if package else []
    candidates.append(Path(sys.executable).parent / executable)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(executable)


class _Reader:
    def __init__(self, package_shares: Mapping[str, str | Path] | None) -> None:
        self.package_shares = package_shares
        self.processes: list[LaunchProcess] = []
        self.declared: set[str] = set()

    # ---------------------------------------------------------------- substitutions
    @overload
    def subst(self, text: str, scope: dict[str, Any], where: str) -> str: ...
    @overload
    def subst(self, text: str | None, scope: dict[str, Any], where: str) -> str | None: ...

    def subst(self, text: str | None, scope: dict[str, Any], where: str) -> str | None:
        if text is None:
            return None
        out = text
        # Innermost first, so $(var $(var x)) and paths built from substitutions work.
        for _ in range(100):
            match = _SUBST.search(out)
            if not match:
                break
            out = (
                out[: match.start()]
                + self._one(match.group(1), match.group(2).split(), scope, where)
                + out[match.end() :]
            )
        if '$(' in out:
            raise ValueError(
                f'{where}: unsupported substitution in {text!r} (supported: var, find-pkg-share, ' f'env, dirname)'
            )
        return out

    def _one(self, kind: str, args: list[str], scope: dict[str, Any], where: str) -> str:
        if kind == 'var' and len(args) == 1:
            if args[0] not in scope['args']:
                raise ValueError(f'{where}: $(var {args[0]}) is not a declared argument')
            return scope['args'][args[0]]
        if kind == 'find-pkg-share' and len(args) == 1:
            return str(find_package_share(args[0], self.package_shares))
        if kind == 'env' and len(args) in (1, 2):
            value = os.environ.get(args[0], args[1] if len(args) == 2 else None)
            if value is None:
                raise ValueError(f'{where}: environment variable {args[0]} is not set and has no default')
            return value
        if kind == 'dirname' and not args:
            return str(scope['file'].parent)
        raise ValueError(f"{where}: unsupported substitution $({kind} {' '.join(args)})")

    # ---------------------------------------------------------------- elements
    def read_file(self, path: str | Path, scope: dict[str, Any]) -> None:
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise ValueError(f'cannot read launch file {path}: {exc}') from None
        if root.tag != 'launch':
            raise ValueError(f'{path}: root element must be <launch>, got <{root.tag}>')
        self.children(root, dict(scope, file=path))

    def children(self, element: ET.Element, scope: dict[str, Any]) -> None:
        for child in element:
            if not isinstance(child.tag, str):  # comments
                continue
            self.element(child, scope)

    def enabled(self, el: ET.Element, scope: dict[str, Any], where: str) -> bool:
        cond_if, cond_unless = el.get('if'), el.get('unless')
        if cond_if is not None and not as_bool(self.subst(cond_if, scope, where), f'{where} if='):
            return False
        if cond_unless is not None and as_bool(self.subst(cond_unless, scope, where), f'{where} unless='):
            return False
        return True

    def element(self, el: ET.Element, scope: dict[str, Any]) -> None:
        where = f"{scope['file'].name}: <{el.tag}{' ' + el.get('name', '') if el.get('name') else ''}>"
        if el.tag not in _ALLOWED:
            raise ValueError(f'{where}: unsupported element (supported: {", ".join(sorted(_ALLOWED))})')
        unknown = set(el.attrib) - _ALLOWED[el.tag]
        if unknown:
            raise ValueError(f'{where}: unsupported attribute(s) {sorted(unknown)}')
        if not self.enabled(el, scope, where):
            return
        args = scope['args']
        if el.tag == 'arg':
            name = self._required(el, 'name', where)
            self.declared.add(name)
            if name not in args:  # given by the caller or an <include> keeps precedence
                if el.get('default') is None:
                    raise ValueError(f"{where}: argument '{name}' has no default and was not given")
                args[name] = self.subst(el.get('default'), scope, where)
        elif el.tag == 'let':
            args[self._required(el, 'name', where)] = self.subst(self._required(el, 'value', where), scope, where)
        elif el.tag == 'group':
            scoped = as_bool(self.subst(el.get('scoped', 'true'), scope, where), f'{where} scoped=')
            inner = dict(scope, args=dict(args)) if scoped else scope
            self.children(el, inner)
        elif el.tag == 'push-ros-namespace':
            ns = self.subst(self._required(el, 'namespace', where), scope, where)
            scope['ns'] = _join_namespace(scope['ns'], ns)
        elif el.tag == 'include':
            self.include(el, scope, where)
        elif el.tag == 'node':
            self.node(el, scope, where)
        else:
            argv = shlex.split(self.subst(self._required(el, 'cmd', where), scope, where))
            if not argv:
                raise ValueError(f'{where}: empty cmd')
            env: dict[str, str] = {}
            for child in el:
                if isinstance(child.tag, str):
                    cwhere = f'{where} <{child.tag}>'
                    if child.tag != 'env':
                        raise ValueError(f'{cwhere}: unsupported executable child (env)')
                    self._env(child, env, scope, cwhere)
            exe = shutil.which(argv[0])
            self.processes.append(
                LaunchProcess(
                    'executable',
                    [exe or argv[0], *argv[1:]],
                    exe is not None,
                    executable=argv[0],
                    name=el.get('name', ''),
                    env=env,
                )
            )

    def include(self, el: ET.Element, scope: dict[str, Any], where: str) -> None:
        file = Path(self.subst(self._required(el, 'file', where), scope, where))
        if not file.is_absolute():
            file = (scope['file'].parent / file).resolve()
        # Like launch's IncludeLaunchDescription: the given args are set in the *current* scope (wrap the
        # include in a <group> to keep them from leaking into what follows).
        for child in el:
            if not isinstance(child.tag, str):
                continue
            if child.tag != 'arg' or set(child.attrib) - {'name', 'value'}:
                raise ValueError(f'{where}: only <arg name value> children are supported')
            scope['args'][self._required(child, 'name', where)] = self.subst(
                self._required(child, 'value', where), scope, where
            )
        self.read_file(file, scope)

    def node(self, el: ET.Element, scope: dict[str, Any], where: str) -> None:
        pkg = self.subst(self._required(el, 'pkg', where), scope, where)
        exe_name = self.subst(self._required(el, 'exec', where), scope, where)
        name = self.subst(el.get('name'), scope, where)
        ns = _join_namespace(scope['ns'], self.subst(el.get('namespace', ''), scope, where))
        exe = resolve_executable(pkg, exe_name)
        argv = [exe or exe_name]
        argv += self.subst(el.get('args', ''), scope, where).split()
        ros_args: list[str] = []
        if name:
            ros_args += ['-r', f'__node:={name}']
        if ns != '/':
            ros_args += ['-r', f'__ns:={ns}']
        params: list[tuple[str, ...]] = []
        remaps: list[tuple[str, str]] = []
        env: dict[str, str] = {}
        for child in el:
            if not isinstance(child.tag, str):
                continue
            cwhere = f'{where} <{child.tag}>'
            if child.tag == 'param':
                if set(child.attrib) == {'from'}:
                    path = self.subst(child.attrib['from'], scope, cwhere)
                    if not Path(path).is_file():
                        raise ValueError(f'{cwhere}: parameter file {path} does not exist')
                    params.append(('file', path))
                    ros_args += ['--params-file', path]
                elif set(child.attrib) == {'name', 'value'}:
                    pname = self.subst(child.attrib['name'], scope, cwhere)
                    value = self.subst(child.attrib['value'], scope, cwhere)
                    params.append(('value', pname, value))
                    ros_args += ['-p', f'{pname}:={value}']
                else:
                    raise ValueError(f'{cwhere}: use <param from=.../> or <param name=... value=.../>')
            elif child.tag == 'remap':
                if set(child.attrib) != {'from', 'to'}:
                    raise ValueError(f'{cwhere}: needs exactly from= and to=')
                pair = (self.subst(child.attrib['from'], scope, cwhere), self.subst(child.attrib['to'], scope, cwhere))
                remaps.append(pair)
            elif child.tag == 'env':
                self._env(child, env, scope, cwhere)
            else:
                raise ValueError(f'{cwhere}: unsupported node child (param, remap, env)')
        for src, dst in remaps:  # launch_ros passes remaps after the parameters
            ros_args += ['-r', f'{src}:={dst}']
        if ros_args:
            argv += ['--ros-args', *ros_args]
        self.processes.append(
            LaunchProcess(
                'node',
                argv,
                exe is not None,
                package=pkg,
                executable=exe_name,
                name=name or '',
                namespace=ns,
                params=params,
                remaps=remaps,
                env=env,
            )
        )

    def _env(self, child: ET.Element, env: dict[str, str], scope: dict[str, Any], where: str) -> None:
        if set(child.attrib) != {'name', 'value'}:
            raise ValueError(f'{where}: needs exactly name= and value=')
        env[self.subst(child.attrib['name'], scope, where)] = self.subst(child.attrib['value'], scope, where)

    @staticmethod
    def _required(el: ET.Element, attr: str, where: str) -> str:
        value = el.get(attr)
        if value is None:
            raise ValueError(f'{where}: missing attribute {attr!r}')
        return value


def _join_namespace(base: str, ns: str | None) -> str:
    """launch_ros semantics: a relative namespace is appended to the pushed one, an absolute one replaces it."""
    ns = (ns or '').strip()
    if ns.startswith('/'):
        full = ns
    else:
        full = base.rstrip('/') + '/' + ns
    full = '/' + '/'.join(p for p in full.split('/') if p)
    return full


def read_launch_file(
    launch_file: str | Path,
    overrides: Mapping[str, Any] | None = None,
    package_shares: Mapping[str, str | Path] | None = None,
) -> list[LaunchProcess]:
    """The processes an XML launch file starts, as ``LaunchProcess`` entries in document order.

    overrides: {arg: value} like `ros2 launch ... arg:=value` (values are strings; bools as 'true'/'false').
    package_shares: {package: folder} used for $(find-pkg-share) before the installed locations
    (tests point the project's package at the source tree).
    """
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if not isinstance(key, str) or not isinstance(value, (str, bool, int, float)):
            raise TypeError(f'overrides must map argument names to str/bool/number, got {key!r}: {value!r}')
    overrides = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in overrides.items()}
    reader = _Reader(package_shares)
    launch_file = Path(launch_file).resolve()
    reader.read_file(launch_file, {'args': dict(overrides), 'ns': '/', 'file': launch_file})
    unknown = set(overrides) - reader.declared
    if unknown:
        raise ValueError(
            f'{launch_file}: unknown launch argument(s) {sorted(unknown)}; declared: ' f'{sorted(reader.declared)}'
        )
    return reader.processes


def node_commands(
    launch_file: str | Path,
    overrides: Mapping[str, Any] | None = None,
    package_shares: Mapping[str, str | Path] | None = None,
) -> list[list[str]]:
    """Command lines (lists of strings) of every process the launch file starts."""
    return [p.argv for p in read_launch_file(launch_file, overrides, package_shares)]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0 if argv else 2
    overrides: dict[str, str] = {}
    for item in argv[1:]:
        if ':=' not in item:
            print(f'arguments are name:=value, got {item!r}', file=sys.stderr)
            return 2
        key, value = item.split(':=', 1)
        overrides[key] = value
    try:
        processes = read_launch_file(argv[0], overrides)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    for p in processes:
        print(('' if p.found else '# not found on this machine: ') + p.command)
    return 0


if __name__ == '__main__':
    sys.exit(main())
