"""KVPrefix: a continued run equals the whole run; a padded prefix is refused."""

import pytest
import torch


def test_continuing_from_a_prefix_equals_the_whole_run(tiny_llama):
    torch.manual_seed(0)
    d = tiny_llama.hf.config.hidden_size
    x = torch.randn(3, 7, d)
    whole = tiny_llama(x, torch.ones(3, 7, dtype=torch.long))
    _, kv = tiny_llama.forward_with_kv(x[:, :4])
    assert not kv.padded and kv.n_pos == 4
    rest = tiny_llama(x[:, 4:], torch.ones(3, 3, dtype=torch.long), past=kv)
    torch.testing.assert_close(rest, whole[:, 4:], atol=1e-5, rtol=1e-4)
    one = tiny_llama(x[1:2, 4:], torch.ones(1, 3, dtype=torch.long), past=kv.select(torch.tensor([1])))
    torch.testing.assert_close(one, whole[1:2, 4:], atol=1e-5, rtol=1e-4)


def test_a_padded_prefix_is_refused_with_a_clear_error(tiny_llama):
    d = tiny_llama.hf.config.hidden_size
    x = torch.randn(2, 4, d)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    _, kv = tiny_llama.forward_with_kv(x, mask)
    assert kv.padded and kv.select(torch.tensor([0])).padded
    with pytest.raises(ValueError, match="padded run"):
        tiny_llama(x[:, :1], torch.ones(2, 1, dtype=torch.long), past=kv)
