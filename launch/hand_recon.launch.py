"""One hand_recon node per camera, optionally with RViz and an MCAP recording (Python form).

    ros2 launch hand_recon_ros hand_recon.launch.py camera:=/camera/color rviz:=true
    ros2 launch hand_recon_ros hand_recon.launch.py camera:=/cam_left namespace:=left record:=true

Same arguments as hand_recon.launch.xml (test/test_launch_files.py checks they stay in step); this
form also normalises namespaces (relative or absolute) and names a fresh bag folder when bag_dir is
empty. `launch` is imported inside the functions only: machines with ROS from PyPI wheels have no
`launch`, and the tests there still compile and inspect this file.
"""

PACKAGE = 'hand_recon_ros'

# name: (default, description); a default starting with 'share:' is a path in this package's share folder,
# 'env:NAME|fallback' is the environment variable NAME when set, else the fallback
ARGUMENTS = {
    'camera': ('/camera', 'camera namespace: subscribes <camera>/<image> and <camera>/camera_info'),
    'image': ('image_raw', 'image topic inside the camera namespace (compressed transport: + /compressed)'),
    'namespace': ('', 'node namespace, one per camera (e.g. cam1); outputs are <namespace>/hand_recon/...'),
    'params_file': ('share:config/hand_recon.yaml', 'node parameters (YAML)'),
    'device': ('auto', 'auto | cpu | cuda | cuda:N'),
    'input_transport': ('raw', 'raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage)'),
    'autostart': ('true', 'configure and activate the lifecycle node on start'),
    'landmarks': (
        'true',
        'landmark crop stage (parameter landmarks.enabled, overrides the params file): true = real-photo fingers '
        'and sides, ~190 ms more per frame on a 2-core CPU; false = ACR alone',
    ),
    'depth': (
        'false',
        'RGB-D camera: place hands by the aligned depth image on depth_image (parameter depth.enabled, overrides the '
        'params file)',
    ),
    'depth_image': (
        '/camera/aligned_depth_to_color/image_raw',
        'depth image registered to the colour camera (16UC1 mm or 32FC1 m), with depth:=true',
    ),
    'rviz': ('false', 'start rviz2 with config/hand_recon.rviz'),
    'fixed_frame': ('camera_color_optical_frame', 'RViz fixed frame: the frame_id of your camera images'),
    'record': ('false', 'record the node outputs and camera_info with ros2 bag (MCAP)'),
    'record_images': ('false', 'also record the input images (large)'),
    'bag_dir': ('', 'bag folder to create; empty = ./hand_recon_<date>_<time>'),
    # Fast DDS sends frames over 512 KiB by UDP fragments unless the shared-memory segment is enlarged
    # (config/fastdds_large_frames.xml explains); a FASTRTPS_DEFAULT_PROFILES_FILE already set wins.
    'fastdds_profile': (
        'env:FASTRTPS_DEFAULT_PROFILES_FILE|share:config/fastdds_large_frames.xml',
        'Fast DDS XML profile for the processes this file starts '
        '(default: 16 MiB shared-memory segment for camera frames)',
    ),
}
PROFILE_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'

OUTPUT_TOPICS = ('hands', 'hands_smoothed', 'hand_model_info')


def _absolute(name, namespace='/'):
    """Resolve a topic/namespace name like rcl does for a process in `namespace` (no ~ or {} here)."""
    name = name.strip()
    full = name if name.startswith('/') else namespace.rstrip('/') + '/' + name
    return '/' + '/'.join(part for part in full.split('/') if part)


def _as_bool(text, what):
    value = text.strip().lower()
    if value in ('true', '1'):
        return True
    if value in ('false', '0'):
        return False
    raise ValueError(f'launch argument {what} must be true or false, got {text!r}')


def _launch_setup(context):
    import datetime
    import os

    from launch.actions import ExecuteProcess, LogInfo
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    for flag in ('autostart', 'landmarks', 'depth', 'rviz', 'record', 'record_images'):
        arg[flag] = _as_bool(arg[flag], flag)
    namespace = _absolute(arg['namespace'])
    # A relative camera namespace lives in the node's namespace, as rcl would resolve the remap.
    camera = _absolute(arg['camera'], namespace)
    image = f"{camera}/{arg['image'].strip('/')}"
    node_topic = f"{namespace.rstrip('/')}/hand_recon"
    env = {PROFILE_ENV: arg['fastdds_profile']}

    actions = [
        Node(
            package=PACKAGE,
            executable='hand_recon_node',
            name='hand_recon',
            namespace=namespace,
            output='screen',
            emulate_tty=True,
            parameters=[
                arg['params_file'],
                {
                    'device': arg['device'],
                    'input_transport': arg['input_transport'],
                    'autostart': arg['autostart'],
                    'landmarks.enabled': arg['landmarks'],
                    'depth.enabled': arg['depth'],
                },
            ],
            remappings=[
                ('image', image),
                ('image/compressed', f'{image}/compressed'),
                ('camera_info', f'{camera}/camera_info'),
                ('depth/image', _absolute(arg['depth_image'], namespace)),
            ],
            additional_env=env,
        )
    ]

    if arg['rviz']:
        from launch_ros.substitutions import FindPackageShare

        rviz_config = os.path.join(FindPackageShare(PACKAGE).perform(context), 'config', 'hand_recon.rviz')
        actions.append(
            Node(
                package='rviz2',
                executable='rviz2',
                name='hand_recon_rviz',
                namespace=namespace,
                arguments=['-d', rviz_config, '-f', arg['fixed_frame']],
                # The config names /hand_recon/...; relative targets follow this launch's namespace.
                remappings=[
                    ('/hand_recon/markers', 'hand_recon/markers'),
                    ('/hand_recon/debug_image', 'hand_recon/debug_image'),
                ],
                additional_env=env,
            )
        )

    if arg['record']:
        topics = [f'{node_topic}/{t}' for t in OUTPUT_TOPICS] + ['/diagnostics', f'{camera}/camera_info']
        if arg['record_images']:
            topics.append(f'{image}/compressed' if arg['input_transport'] == 'compressed' else image)
        bag_dir = arg['bag_dir'] or os.path.abspath('hand_recon_' + datetime.datetime.now().strftime('%Y%m%d_%H%M%S'))
        actions += [
            LogInfo(msg=f'recording {len(topics)} topics to {bag_dir}'),
            # Jazzy syntax; on Humble (positional topics) drop '--topics'.
            ExecuteProcess(
                cmd=['ros2', 'bag', 'record', '-s', 'mcap', '-o', bag_dir, '--topics', *topics],
                output='screen',
                additional_env=env,
            ),
        ]
    return actions


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import EnvironmentVariable, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    def substitution(default):
        if default.startswith('env:'):  # 'env:NAME|fallback': the variable when set, else the fallback
            variable, fallback = default[len('env:') :].split('|', 1)
            return EnvironmentVariable(variable, default_value=substitution(fallback))
        if default.startswith('share:'):
            return PathJoinSubstitution([FindPackageShare(PACKAGE), *default[len('share:') :].split('/')])
        return default

    declared = []
    for name, (default, description) in ARGUMENTS.items():
        default = substitution(default)
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
