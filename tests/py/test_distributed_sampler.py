"""DistributedSampler against PyTorch's: the same shares without shuffling, the same lengths, and shuffled shares
that together cover the dataset once per epoch (padding aside) and change with set_epoch."""
import pytest
import torch.utils.data

from orchard.utils.data import DistributedSampler


@pytest.mark.parametrize("n", [0, 1, 5, 8, 11])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shares_match_pytorch(n, replicas, drop_last):
    for rank in range(replicas):
        ours = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False,
                                                      drop_last=drop_last)
        assert len(ours) == len(theirs)
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("replicas", [2, 3])
def test_shuffled_shares_cover_the_dataset_and_change_per_epoch(replicas):
    n = 12
    samplers = [DistributedSampler(range(n), num_replicas=replicas, rank=r, seed=7) for r in range(replicas)]
    first = [list(s) for s in samplers]
    assert sorted(i for share in first for i in share) == list(range(n))
    assert first == [list(s) for s in samplers]  # repeatable
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert sorted(i for share in second for i in share) == list(range(n))
    assert second != first


def test_wrong_arguments_raise():
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedSampler(range(4))  # no process group to take them from
