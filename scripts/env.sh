# Sourced by the Makefile scripts: the environment every ROS process of this project runs with here.
# Discovery stays on this machine (multicast off the host is not allowed on dev/CI machines).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-60}"
export RCUTILS_COLORIZED_OUTPUT=0 RCUTILS_LOGGING_BUFFERED_STREAM=0 PYTHONUNBUFFERED=1
if [ -z "${ROS_LOG_DIR:-}" ]; then
  ROS_LOG_DIR="$(mktemp -d -t hand_recon_ros_log.XXXXXX)"
  export ROS_LOG_DIR
fi
# Never inherit this from another venv: the wheels' bootstrap would then skip setting library paths.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
