"""Launch files, the RViz config and the XML launch reader.

The XML launch files are started for real (the command lines launch_reader derives from them) and
checked over DDS; the Python launch file is compiled, inspected and run against stand-in launch
classes, since `launch`/`launch_ros` do not exist on machines with ROS from PyPI wheels.
"""

import ast
import os
import py_compile
import shutil
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from hand_recon_ros.tools import launch_reader
from hand_recon_ros.tools.launch_reader import find_package_share, read_launch_file
from hand_recon_ros.tools.node_process import ChildProcess, stop_all

REPO = Path(__file__).resolve().parents[1]
LAUNCH_XML = REPO / 'launch' / 'hand_recon.launch.xml'
MULTI_XML = REPO / 'launch' / 'multi_camera.launch.xml'
LAUNCH_PY = REPO / 'launch' / 'hand_recon.launch.py'
RVIZ = REPO / 'config' / 'hand_recon.rviz'
# The source tree as the package's share folder: the files under test, not a possibly stale install.
SHARES = {'hand_recon_ros': str(REPO)}
SPEED = ['-p', 'weights:=untrained', '-p', 'network.input_size:=128', '-p', 'num_threads:=1']


def xml_args(path):
    return {
        a.get('name'): a.get('default') for a in ET.parse(path).getroot().iter('arg') if a.get('default') is not None
    }


# ----------------------------------------------------------------------------------- reader, no DDS
def test_default_xml_launch_is_one_node_with_params_then_remaps():
    procs = read_launch_file(LAUNCH_XML, package_shares=SHARES)
    assert [p.kind for p in procs] == ['node']
    node = procs[0]
    assert node.found and node.argv[0] == launch_reader.resolve_executable('hand_recon_ros', 'hand_recon_node')
    assert Path(node.argv[0]).name == 'hand_recon_node'
    assert node.argv[1:] == [
        '--ros-args',
        '-r',
        '__node:=hand_recon',
        '--params-file',
        str(REPO / 'config' / 'hand_recon.yaml'),
        '-p',
        'device:=auto',
        '-p',
        'input_transport:=raw',
        '-p',
        'autostart:=true',
        '-p',
        'landmarks.enabled:=true',
        '-p',
        'depth.enabled:=false',
        '-r',
        'image:=/camera/image_raw',
        '-r',
        'image/compressed:=/camera/image_raw/compressed',
        '-r',
        'camera_info:=/camera/camera_info',
        '-r',
        'depth/image:=/camera/aligned_depth_to_color/image_raw',
    ]
    assert node.namespace == '/' and node.name == 'hand_recon'


def test_launch_gives_its_processes_the_large_frame_fastdds_profile(monkeypatch):
    monkeypatch.delenv('FASTRTPS_DEFAULT_PROFILES_FILE', raising=False)
    procs = read_launch_file(LAUNCH_XML, {'rviz': 'true', 'record': 'true'}, package_shares=SHARES)
    shipped = str(REPO / 'config' / 'fastdds_large_frames.xml')
    assert [p.env for p in procs] == [{'FASTRTPS_DEFAULT_PROFILES_FILE': shipped}] * 3
    assert procs[0].command.startswith(f'FASTRTPS_DEFAULT_PROFILES_FILE={shipped} ')
    # The user's own profile (already in the environment) wins; the argument overrides both.
    monkeypatch.setenv('FASTRTPS_DEFAULT_PROFILES_FILE', '/etc/my_dds.xml')
    (node,) = read_launch_file(LAUNCH_XML, package_shares=SHARES)
    assert node.env == {'FASTRTPS_DEFAULT_PROFILES_FILE': '/etc/my_dds.xml'}
    (node,) = read_launch_file(LAUNCH_XML, {'fastdds_profile': '/x.xml'}, package_shares=SHARES)
    assert node.env == {'FASTRTPS_DEFAULT_PROFILES_FILE': '/x.xml'}


def test_xml_switches_rviz_namespace_and_recording():
    procs = read_launch_file(
        LAUNCH_XML,
        {
            'camera': '/rs/color',
            'namespace': '/cam1',
            'rviz': True,
            'fixed_frame': 'rs_color_optical_frame',
            'record': 'true',
            'bag_dir': '/tmp/b1',
            'input_transport': 'compressed',
        },
        package_shares=SHARES,
    )
    node, rviz, record = procs
    assert '-r' in node.argv and '__ns:=/cam1' in node.argv and 'input_transport:=compressed' in node.argv
    assert ('image/compressed', '/rs/color/image_raw/compressed') in node.remaps
    assert (rviz.package, rviz.executable, rviz.namespace) == ('rviz2', 'rviz2', '/cam1')
    assert rviz.argv[1:5] == ['-d', str(RVIZ), '-f', 'rs_color_optical_frame']
    assert rviz.remaps == [
        ('/hand_recon/markers', 'hand_recon/markers'),
        ('/hand_recon/debug_image', 'hand_recon/debug_image'),
    ]
    assert rviz.found == (shutil.which('rviz2') is not None)
    assert record.kind == 'executable' and record.argv[1:] == [
        'bag',
        'record',
        '-s',
        'mcap',
        '-o',
        '/tmp/b1',
        '--topics',
        '/cam1/hand_recon/hands',
        '/cam1/hand_recon/hands_smoothed',
        '/cam1/hand_recon/hand_model_info',
        '/diagnostics',
        '/rs/color/camera_info',
    ]
    with_images = read_launch_file(
        LAUNCH_XML, {'namespace': 'cam1', 'record': 'true', 'record_images': '1'}, package_shares=SHARES
    )
    assert len(with_images) == 2
    assert with_images[1].argv[-3:] == ['/camera/camera_info', '/camera/image_raw', '/camera/image_raw/compressed']
    assert with_images[0].namespace == '/cam1'  # a relative namespace is made absolute for the node


def test_multi_camera_xml_gives_one_node_per_namespace():
    procs = read_launch_file(MULTI_XML, {'device': 'cpu', 'camera2': '/right_cam'}, package_shares=SHARES)
    assert [(p.name, p.namespace) for p in procs] == [('hand_recon', '/cam1'), ('hand_recon', '/cam2')]
    assert [p.remaps[0] for p in procs] == [('image', '/camera1/image_raw'), ('image', '/right_cam/image_raw')]
    assert all(('value', 'device', 'cpu') in p.params for p in procs)
    given = read_launch_file(MULTI_XML, {'fastdds_profile': '/dds.xml'}, package_shares=SHARES)
    assert [p.env for p in given] == [{'FASTRTPS_DEFAULT_PROFILES_FILE': '/dds.xml'}] * 2


@pytest.mark.parametrize(
    'body, overrides, message',
    [
        ('<node pkg="p" exec="e"><param name="a" value="1"/></node><foo/>', {}, 'unsupported element'),
        (
            '<arg name="x" default="1"/><node pkg="p" exec="e" if="$(var x)" respawn_delay="2"/>',
            {},
            'unsupported attribute',
        ),
        ('<arg name="x" default="yes"/><node pkg="p" exec="e" if="$(var x)"/>', {}, 'must be true/false'),
        ('<arg name="x"/>', {}, "'x' has no default"),
        ('<node pkg="p" exec="e" name="$(var nope)"/>', {}, 'not a declared argument'),
        ('<node pkg="p" exec="e" name="$(eval 1+1)"/>', {}, 'unsupported substitution'),
        ('<arg name="x" default="1"/>', {'y': '2'}, 'unknown launch argument'),
        ('<node pkg="p" exec="e"><param from="/does/not/exist.yaml"/></node>', {}, 'does not exist'),
        ('<node pkg="p" exec="e" args="$(find-pkg-share no_such_package_xyz)"/>', {}, 'package not found'),
        ('<node pkg="p" exec="e"><env name="A"/></node>', {}, 'exactly name= and value='),
        ('<executable cmd="e"><remap from="a" to="b"/></executable>', {}, 'unsupported executable child'),
    ],
)
def test_reader_refuses_what_it_cannot_read_faithfully(tmp_path, body, overrides, message):
    f = tmp_path / 'bad.launch.xml'
    f.write_text(f'<launch>{body}</launch>')
    with pytest.raises(ValueError, match=message):
        read_launch_file(f, overrides)


def test_reader_scopes_groups_leaks_includes_and_pushes_namespaces(tmp_path):
    (tmp_path / 'child.launch.xml').write_text(
        '<launch><arg name="who" default="child_default"/><arg name="ns" default=""/>'
        '<node pkg="p" exec="e" name="$(var who)" namespace="$(var ns)"/></launch>'
    )
    (tmp_path / 'top.launch.xml').write_text("""<launch>
      <arg name="who" default="top"/>
      <group><let name="who" value="in_group"/><push-ros-namespace namespace="robot"/>
        <node pkg="p" exec="e" name="$(var who)"/>
        <node pkg="p" exec="e" name="abs" namespace="/fixed"/>
        <node pkg="p" exec="e" name="rel" namespace="arm"/>
      </group>
      <node pkg="p" exec="e" name="$(var who)"/>
      <include file="child.launch.xml"><arg name="who" value="leaked"/></include>
      <node pkg="p" exec="e" name="$(var who)" unless="false"/>
      <group if="0"><node pkg="p" exec="e" name="never"/></group>
    </launch>""")
    procs = read_launch_file(tmp_path / 'top.launch.xml', {'who': 'cli'})
    assert [(p.name, p.namespace) for p in procs] == [
        ('in_group', '/robot'),
        ('abs', '/fixed'),
        ('rel', '/robot/arm'),
        ('cli', '/'),
        ('leaked', '/'),
        ('leaked', '/'),
    ]
    assert procs[0].argv[1:] == ['--ros-args', '-r', '__node:=in_group', '-r', '__ns:=/robot']
    assert not procs[0].found and procs[0].argv[0] == 'e'


def test_find_pkg_share_and_the_command_line_tool(capsys):
    # Without a mapping: the installed share folder (scripts/setup.sh puts it in this venv's prefix).
    share = find_package_share('hand_recon_ros')
    assert (share / 'package.xml').is_file() and (share / 'launch' / 'hand_recon.launch.xml').is_file()
    assert launch_reader.main([str(LAUNCH_XML), 'device:=cpu', 'rviz:=true']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and 'device:=cpu' in lines[0] and '__node:=hand_recon' in lines[0]
    assert ('-d ' + str(share / 'config' / 'hand_recon.rviz')) in lines[1]
    assert launch_reader.main([str(LAUNCH_XML), 'device=cpu']) == 2


# ----------------------------------------------------------------------------------- Python launch file
def _stub_launch_modules(monkeypatch):
    """Minimal stand-ins for the launch/launch_ros classes the launch file uses; they record their kwargs."""

    def cls(name, *positional):
        def init(self, *args, **kwargs):
            self.kind = name
            self.kwargs = dict(zip(positional, args), **kwargs)

        return type(name, (), {'__init__': init})

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class FindPackageShare:
        def __init__(self, package):
            self.package = package

        def perform(self, context):
            return f'/opt/share/{self.package}'

    modules = {
        'launch': {'LaunchDescription': cls('LaunchDescription', 'entities')},
        'launch.actions': {
            n: cls(n, *p)
            for n, p in [
                ('DeclareLaunchArgument', ('name',)),
                ('OpaqueFunction', ()),
                ('ExecuteProcess', ()),
                ('LogInfo', ()),
            ]
        },
        'launch.substitutions': {
            'LaunchConfiguration': LaunchConfiguration,
            'PathJoinSubstitution': cls('PathJoinSubstitution', 'parts'),
            'EnvironmentVariable': cls('EnvironmentVariable', 'name'),
        },
        'launch_ros.actions': {'Node': cls('Node')},
        'launch_ros.substitutions': {'FindPackageShare': FindPackageShare},
    }
    for mod, attrs in modules.items():
        monkeypatch.setitem(sys.modules, mod, types.SimpleNamespace(**attrs))
    monkeypatch.setitem(sys.modules, 'launch_ros', types.SimpleNamespace())


def test_python_launch_file_compiles_imports_launch_lazily_and_matches_the_xml(tmp_path, monkeypatch):
    py_compile.compile(str(LAUNCH_PY), cfile=str(tmp_path / 'launch.pyc'), doraise=True)
    tree = ast.parse(LAUNCH_PY.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    top_imports = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names] + [
        n.module for n in tree.body if isinstance(n, ast.ImportFrom)
    ]
    assert not [m for m in top_imports if m.split('.')[0] in ('launch', 'launch_ros')]
    arguments = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'ARGUMENTS'
    )
    xml_defaults = xml_args(LAUNCH_XML)
    assert set(arguments) == set(xml_defaults)
    differ = {k for k in arguments if arguments[k][0] != xml_defaults[k]}
    # share paths and the environment built by substitution; timestamped bag name
    assert differ == {'params_file', 'bag_dir', 'fastdds_profile'}

    # Run it against stand-in launch classes.
    namespace = {'__name__': 'hand_recon_launch'}
    exec(compile(LAUNCH_PY.read_text(), str(LAUNCH_PY), 'exec'), namespace)
    _stub_launch_modules(monkeypatch)
    description = namespace['generate_launch_description']()
    entities = description.kwargs['entities']
    declared = [e.kwargs['name'] for e in entities if e.kind == 'DeclareLaunchArgument']
    assert declared == list(arguments)
    profile = next(
        e.kwargs['default_value']
        for e in entities
        if e.kind == 'DeclareLaunchArgument' and e.kwargs['name'] == 'fastdds_profile'
    )
    assert profile.kind == 'EnvironmentVariable' and profile.kwargs['name'] == 'FASTRTPS_DEFAULT_PROFILES_FILE'
    assert profile.kwargs['default_value'].kwargs['parts'][1:] == ['config', 'fastdds_large_frames.xml']
    setup = entities[-1].kwargs['function']
    context = {k: v[0] for k, v in arguments.items()}
    context.update(
        params_file='/p.yaml',
        camera='color',
        namespace='cam1/',
        rviz='True',
        record='1',
        record_images='true',
        input_transport='compressed',
        device='cuda:1',
        landmarks='false',
        depth='true',
        depth_image='cam_depth/image_raw',
        bag_dir='/b',
        fastdds_profile='/dds.xml',
    )
    node, rviz, _, record = setup(context)
    assert (
        node.kwargs['additional_env']
        == rviz.kwargs['additional_env']
        == record.kwargs['additional_env']
        == {'FASTRTPS_DEFAULT_PROFILES_FILE': '/dds.xml'}
    )
    assert node.kwargs['namespace'] == '/cam1' and node.kwargs['name'] == 'hand_recon'
    assert node.kwargs['parameters'] == [
        '/p.yaml',
        {
            'device': 'cuda:1',
            'input_transport': 'compressed',
            'autostart': True,
            'landmarks.enabled': False,
            'depth.enabled': True,
        },
    ]
    # A relative camera resolves in the node's namespace, like the node's own remap would.
    assert node.kwargs['remappings'] == [
        ('image', '/cam1/color/image_raw'),
        ('image/compressed', '/cam1/color/image_raw/compressed'),
        ('camera_info', '/cam1/color/camera_info'),
        ('depth/image', '/cam1/cam_depth/image_raw'),
    ]
    assert rviz.kwargs['arguments'] == [
        '-d',
        '/opt/share/hand_recon_ros/config/hand_recon.rviz',
        '-f',
        'camera_color_optical_frame',
    ]
    assert record.kwargs['cmd'] == [
        'ros2',
        'bag',
        'record',
        '-s',
        'mcap',
        '-o',
        '/b',
        '--topics',
        '/cam1/hand_recon/hands',
        '/cam1/hand_recon/hands_smoothed',
        '/cam1/hand_recon/hand_model_info',
        '/diagnostics',
        '/cam1/color/camera_info',
        '/cam1/color/image_raw/compressed',
    ]
    context.update(rviz='false', record='false', namespace='')
    (only,) = setup(context)
    assert only.kwargs['namespace'] == '/'
    context['autostart'] = 'maybe'
    with pytest.raises(ValueError, match='autostart must be true or false'):
        setup(context)


# ----------------------------------------------------------------------------------- RViz config
def rviz_displays():
    config = yaml.safe_load(RVIZ.read_text())
    return config, {d['Class'].split('/')[-1]: d for d in config['Visualization Manager']['Displays']}


def test_rviz_config_shows_the_node_outputs_in_the_camera_frame():
    config, displays = rviz_displays()
    assert {'MarkerArray', 'Image', 'TF', 'Grid'} <= set(displays)
    assert displays['MarkerArray']['Topic']['Value'] == '/hand_recon/markers'
    assert displays['Image']['Topic']['Value'] == '/hand_recon/debug_image'
    fixed = config['Visualization Manager']['Global Options']['Fixed Frame']
    assert fixed == xml_args(LAUNCH_XML)['fixed_frame'] and fixed.endswith('optical_frame')
    # The node's publishers that RViz reads (the DDS test checks them on the running node too).
    outputs_source = (REPO / 'hand_recon_ros' / 'ros' / 'outputs.py').read_text()
    assert "'~/markers'" in outputs_source and "'~/debug_image'" in outputs_source
    # The orbit view looks along +z (out of the camera) with image-up (-y) at the top of the screen.
    view = config['Visualization Manager']['Views']['Current']
    pitch, yaw = view['Pitch'], view['Yaw']
    eye_dir = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    assert -eye_dir @ [0, 0, 1] > 0.99  # looking forward
    assert eye_dir[1] < 0  # eye slightly above the optical axis (y down)


# ----------------------------------------------------------------------------------- over DDS
RVIZ_STUB = (
    'import json, sys, rclpy\n'
    'from std_msgs.msg import Empty\n'
    'rclpy.init(args=sys.argv)\n'
    "node = rclpy.create_node('rviz_stub')\n"
    'subs = [node.create_subscription(Empty, t, lambda m: None, 1).topic_name for t in json.loads(sys.argv[1])]\n'
    'print(json.dumps([node.get_fully_qualified_name(), subs]))\n'
    'node.destroy_node(); rclpy.shutdown()\n'
)


@pytest.mark.ros
@pytest.mark.parametrize('namespace, prefix', [('/cam1', '/cam1'), ('', '')])
def test_rviz_remaps_follow_the_launch_namespace(namespace, prefix):
    """rviz2 is absent here: a stub takes its ROS arguments and subscribes the config's topics like rviz2."""
    import json

    _, displays = rviz_displays()
    topics = [displays['MarkerArray']['Topic']['Value'], displays['Image']['Topic']['Value']]
    (rviz,) = [
        p
        for p in read_launch_file(LAUNCH_XML, {'rviz': 'true', 'namespace': namespace}, package_shares=SHARES)
        if p.package == 'rviz2'
    ]
    ros_args = rviz.argv[rviz.argv.index('--ros-args') :]
    out = subprocess.run(
        [sys.executable, '-c', RVIZ_STUB, json.dumps(topics), *ros_args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    name, subscribed = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == f'{prefix}/hand_recon_rviz'
    assert subscribed == [f'{prefix}/hand_recon/markers', f'{prefix}/hand_recon/debug_image']


@contextmanager
def started(processes, log_dir, extra=()):
    """Start launch processes with extra arguments appended; SIGINT them (like ros2 launch) at the end."""
    running = []
    try:
        for i, p in enumerate(processes):
            assert p.found, f'{p.executable} not found (run scripts/setup.sh)'
            running.append(
                ChildProcess([*p.argv, *extra], log_dir / f'proc_{i}.log', env={**os.environ, **p.env}, cwd=REPO)
            )
        yield running
    finally:
        stop_all(running)


def stop_cleanly(procs):
    """SIGINT them all; each exits with 0 and no traceback."""
    for i, (proc, code) in enumerate(zip(procs, stop_all(procs))):
        log = proc.log()
        assert (
            code == 0 and not proc.killed and 'Traceback' not in log
        ), f'process {i} exited with {code}:\n{log[-3000:]}'


def image_msg(stamp_sec, frame_id):
    from sensor_msgs.msg import Image

    img = np.random.default_rng(stamp_sec).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    msg = Image(height=120, width=160, encoding='bgr8', step=480, data=img.tobytes())
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = frame_id
    return msg


def publish_until(ros, pub, msg, received, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not received and time.monotonic() < deadline:
        pub.publish(msg)
        ros.spin_for(0.3)
    assert received, f'nothing received for {pub.topic_name} within {timeout:.0f} s'


@pytest.mark.ros
def test_node_started_exactly_as_the_xml_launch_file_says(ros, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from hand_recon_ros.msg import HandArray

    procs = read_launch_file(LAUNCH_XML, {'camera': '/test_cam', 'device': 'cpu'}, package_shares=SHARES)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    hands = ros.collect(HandArray, '/hand_recon/hands', reliable)
    with started(procs, tmp_path, SPEED) as running:
        pub = ros.node.create_publisher(Image, '/test_cam/image_raw', reliable)
        ros.spin_until(lambda: pub.get_subscription_count() > 0, what='the node to subscribe /test_cam/image_raw')
        ros.spin_until(lambda: ros.node.count_publishers('/hand_recon/hands') > 0, what='/hand_recon/hands')
        ros.spin_until(lambda: ('hand_recon', '/') in ros.node.get_node_names_and_namespaces(), what='the node')
        assert ros.node.get_subscriptions_info_by_topic('/test_cam/camera_info'), 'camera_info not remapped'
        assert not ros.node.get_subscriptions_info_by_topic('/image')
        # What the RViz config displays is what the node publishes, with the types RViz expects.
        _, displays = rviz_displays()
        shown = [displays[kind]['Topic']['Value'] for kind in ('MarkerArray', 'Image')]

        def publishers() -> dict:
            return dict(ros.node.get_publisher_names_and_types_by_node('hand_recon', '/'))

        # discovery lists a node's publishers one by one: wait for the displayed ones, then check their types
        ros.spin_until(lambda: all(t in publishers() for t in shown), what=f'publishers {shown}')
        published = publishers()
        assert published[displays['MarkerArray']['Topic']['Value']] == ['visualization_msgs/msg/MarkerArray']
        assert published[displays['Image']['Topic']['Value']] == ['sensor_msgs/msg/Image']

        publish_until(ros, pub, image_msg(31, 'test_cam_optical'), hands)
        assert hands[0].header.stamp.sec == 31 and hands[0].header.frame_id == 'test_cam_optical'
        assert (hands[0].image_width, hands[0].image_height) == (160, 120)
        stop_cleanly(running)


@pytest.mark.ros
def test_multi_camera_launch_starts_two_independent_nodes(ros, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from hand_recon_ros.msg import HandArray

    procs = read_launch_file(
        MULTI_XML, {'camera1': '/mc_cam1', 'camera2': '/mc_cam2', 'device': 'cpu'}, package_shares=SHARES
    )
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    out = {ns: ros.collect(HandArray, f'/{ns}/hand_recon/hands', reliable) for ns in ('cam1', 'cam2')}
    with started(procs, tmp_path, SPEED) as running:
        pubs = {ns: ros.node.create_publisher(Image, f'/mc_{ns}/image_raw', reliable) for ns in ('cam1', 'cam2')}
        for ns, pub in pubs.items():
            ros.spin_until(lambda pub=pub: pub.get_subscription_count() == 1, timeout=30, what=f'{ns} to subscribe')
            ros.spin_until(
                lambda ns=ns: ros.node.count_publishers(f'/{ns}/hand_recon/hands') == 1,
                timeout=30,
                what=f'/{ns}/hand_recon/hands',
            )
        # Node names travel on their own graph topic, apart from the endpoints: wait for them separately.
        ros.spin_until(
            lambda: {('hand_recon', '/cam1'), ('hand_recon', '/cam2')} <= set(ros.node.get_node_names_and_namespaces()),
            what='both node names',
        )
        for i, ns in enumerate(('cam1', 'cam2')):
            publish_until(ros, pubs[ns], image_msg(40 + i, f'{ns}_optical'), out[ns])
        ros.spin_for(0.5)
        # Each camera's frames come out of its own node only.
        assert {m.header.frame_id for m in out['cam1']} == {'cam1_optical'}
        assert {m.header.frame_id for m in out['cam2']} == {'cam2_optical'}
        stop_cleanly(running)
