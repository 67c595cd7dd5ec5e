"""hand_recon_train.loop.run_loop: the order of hook calls, max_steps, stop from a hook, resumed step counts."""

from hand_recon_train.loop import Hook, LoopState, run_loop
from hand_recon_train.run_record import CsvLog


class Recorder(Hook):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_epoch_start(self, state):
        self.calls.append(('start', state.epoch, state.step))

    def on_step(self, state, record):
        self.calls.append(('step', record['epoch'], record['step'], record['value']))
        if self.stop_at is not None and state.step >= self.stop_at:
            state.stop = True

    def on_epoch_end(self, state):
        self.calls.append(('end', state.epoch, state.step, state.stop))

    def on_end(self, state):
        self.calls.append(('done', state.step))


def _run(epochs, per_epoch=3, **kw):
    hook = Recorder(kw.pop('stop_at', None))
    fetched = []

    def batches(epoch):
        for i in range(per_epoch):
            fetched.append((epoch, i))
            yield 10 * epoch + i

    state = run_loop(lambda batch, state: {'value': batch}, batches, epochs, [hook], **kw)
    return state, hook.calls, fetched


def test_epochs_steps_and_hooks_in_order():
    state, calls, _ = _run(range(2), per_epoch=2)
    assert calls == [
        ('start', 0, 0),
        ('step', 0, 1, 0),
        ('step', 0, 2, 1),
        ('end', 0, 2, False),
        ('start', 1, 2),
        ('step', 1, 3, 10),
        ('step', 1, 4, 11),
        ('end', 1, 4, False),
        ('done', 4),
    ]
    assert (state.epoch, state.step, state.stop) == (1, 4, False)


def test_max_steps_ends_the_run_after_the_epoch_end_hooks_without_fetching_more():
    state, calls, fetched = _run(range(5), max_steps=4)
    assert state.step == 4 and state.stop and state.epoch == 1
    assert calls[-2:] == [('end', 1, 4, True), ('done', 4)]
    assert fetched == [(0, 0), (0, 1), (0, 2), (1, 0)]  # no batch is drawn for a step that will not run
    state, calls, fetched = _run(range(5), max_steps=0)
    assert state.step == 0 and fetched == [(0, 0)] and [c[0] for c in calls] == ['start', 'end', 'done']


def test_a_hook_can_stop_and_a_resumed_loop_counts_on():
    state, calls, _ = _run(range(3), stop_at=2)
    assert state.step == 2 and ('end', 0, 2, True) in calls and ('start', 1, 2) not in calls
    state, calls, _ = _run(range(2, 3), per_epoch=2, state=LoopState(epoch=2, step=7))
    assert calls[:2] == [('start', 2, 7), ('step', 2, 8, 20)] and state.step == 9


def test_csv_log_writes_every_nth_step(tmp_path):
    log = CsvLog(tmp_path / 'log.csv', ['epoch', 'step', 'value'], every=2)
    run_loop(lambda batch, state: {'value': batch, 'extra': 1}, lambda epoch: range(3), range(2), [log])
    assert (tmp_path / 'log.csv').read_text().splitlines() == ['epoch,step,value', '0,2,1', '1,4,0', '1,6,2']
    CsvLog(tmp_path / 'log.csv', ['step'], fresh=True)
    assert not (tmp_path / 'log.csv').exists()
