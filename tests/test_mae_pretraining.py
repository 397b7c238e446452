"""Issue 21, item 4: MAE pretraining with our ViT, end to end. The demo
(tools/demo.py --task mae) pretrains and writes its reconstruction PNG; its
checkpoint fine-tunes in the MAE segmentation recipe through ``load_from``;
pretraining runs under 2-process DDP on a folder of unlabelled images; the
recipe config builds; bad wiring and a bad mask ratio stop with one line.
The loss's parity with mmpretrain's MAE is in tests/backbones/test_mae.py."""
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from timm.layers import resample_abs_pos_embed

from tests.helpers import ROOT, run_main, run_tool
from tests.test_distributed import DATA, free_port, run

CONFIG = ROOT / 'configs' / 'mae' / 'mae_vit-b16_400e_imagenet.py'


@pytest.fixture(scope='module')
def mae_demo(tmp_path_factory):
    """tools/demo.py --task mae on its generated data, cut to 4 iterations of 4 images."""
    tmp = tmp_path_factory.mktemp('mae_demo')
    data, work = tmp / 'synthetic_cls', tmp / 'work'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('OMP_NUM_THREADS', '1')  # tiny tensors: a second thread only adds contention
        proc = run_tool('demo', '--task', 'mae', '--data', str(data), '--work-dir', str(work),
                        '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16',
                        'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1')
    return proc, data, work


def test_demo_prints_the_loss_curve_and_writes_the_reconstruction_png(mae_demo):
    proc, data, work = mae_demo
    lines = proc.stdout.splitlines()
    curve = lines[lines.index('DEMO (mae) reconstruction loss (per-patch normalised pixels, masked patches) '
                              'by iteration:') + 1].split()
    assert curve[0::2] == ['1:', '2:', '3:', '4:']
    assert all(0 < float(x) < 10 for x in curve[1::2])
    assert sum('Iter(train)' in line and 'loss:' in line for line in lines) == 4  # one line per interval
    png = work / 'reconstructions.png'
    assert f'original | masked | reconstruction: {png}' in proc.stdout
    grid = cv2.imread(str(png))
    # 8 val images of 64x64 shown at 2x, 3 columns, 2-pixel gaps
    assert grid.shape == (8 * 128 + 7 * 2, 3 * 128 + 2 * 2, 3)
    original, masked, recon = (grid[:128, j * 130:j * 130 + 128] for j in range(3))
    grey = np.all(masked == 128, axis=-1)[::16, ::16]  # one pixel per 8x8 patch (16 at 2x)
    assert grey.sum() == 48  # 75% of the 64 patches masked
    assert np.array_equal(recon[::16, ::16][~grey], original[::16, ::16][~grey])  # visible pasted back
    assert not np.array_equal(recon[::16, ::16][grey], masked[::16, ::16][grey])  # masked ones predicted


def test_reconstruct_tool_refuses_a_config_that_is_not_mae(mae_demo, capsys):
    _, data, work = mae_demo
    with pytest.raises(SystemExit):
        run_main(capsys, 'mae_reconstruct', str(DATA / 'tiny_upernet_swin.py'), str(work / 'epoch_1.pth'),
                 str(data / 'val'))
    err = capsys.readouterr().err
    assert "tiny_upernet_swin.py: not an MAE pretraining config (model.type='MAE'" in err.splitlines()[0]


def test_pretraining_checkpoint_fine_tunes_in_the_mae_segmentation_recipe(mae_demo, synthetic_ade, tmp_path):
    """The demo's checkpoint -> the MAE UPerNet recipe (at the demo's width,
    a larger input size) through load_from: every encoder tensor arrives as
    pretrained (the position embedding resampled to the new grid), then 2
    iterations train; the backbone's init_cfg (prefix='backbone.') loads the same."""
    _, _, work = mae_demo
    checkpoint = work / 'epoch_1.pth'
    pretrained = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    out = tmp_path / 'finetune'
    run([sys.executable, str(ROOT / 'tools' / 'train.py'), str(DATA / 'tiny_upernet_mae.py'), '--work-dir', str(out),
         '--cfg-options', f'data_root={synthetic_ade}', f'load_from={checkpoint}', 'model.backbone.init_cfg=None'])
    start = torch.load(out / 'before_train.pth', map_location='cpu', weights_only=True)
    encoder = [k for k in start if k.startswith('backbone.')]
    assert len(encoder) == 4 + 4 * 12  # patch embed (2), cls token, pos embed; 12 tensors per block
    # pretrained on an 8x8 patch grid, fine-tuned on 16x16: the position embedding is resampled
    pos = pretrained['backbone.pos_embed']
    assert pos.shape[1] == 1 + 8 * 8 and start['backbone.pos_embed'].shape[1] == 1 + 16 * 16
    assert torch.equal(start['backbone.pos_embed'],
                       resample_abs_pos_embed(pos, new_size=(16, 16), old_size=(8, 8), num_prefix_tokens=1))
    for k in encoder:
        if k != 'backbone.pos_embed':
            assert torch.equal(start[k], pretrained[k]), k
    assert 'backbone.norm.weight' in pretrained  # the pretraining's final norm: not used by this recipe
    end = torch.load(out / 'iter_2.pth', map_location='cpu', weights_only=True)['state_dict']
    assert not torch.equal(end['backbone.blocks.1.attn.qkv.weight'], pretrained['backbone.blocks.1.attn.qkv.weight'])

    # the other way in: the backbone's init_cfg with prefix='backbone.'
    from densekit.backbones.mae import MAEViT
    cfg = Config.fromfile(str(DATA / 'tiny_upernet_mae.py'), import_custom_modules=False).model.backbone
    cfg.pop('type')
    backbone = MAEViT(**dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint), prefix='backbone.')))
    report = backbone.load_pretrained(str(checkpoint), prefix='backbone.')
    assert not report.missing and not report.unexpected and report.ignored == ['norm.bias', 'norm.weight']
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, start['backbone.' + k]), k


@pytest.fixture
def image_folder(tmp_path):
    """Any folder of images, no labels: 6 JPEGs of various sizes, some in a subfolder."""
    rng = np.random.default_rng(0)
    for i in range(6):
        folder = tmp_path / 'images' / ('more' if i % 2 else '')
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f'{i}.jpg'), rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8))
    return tmp_path / 'images'


def test_pretraining_under_two_process_ddp(image_folder, tmp_path, monkeypatch):
    """2 iterations under torchrun (gloo), batch 2 per process, from a saved
    start: each rank's loss is finite and its own (own images, own masks);
    every trainable encoder tensor moved; the fixed position embeddings did not."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from densekit.config import load_config
    monkeypatch.syspath_prepend(str(DATA))  # the config imports testing_hooks
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(load_config(str(DATA / 'tiny_mae_pretrain.py')).model)
    model.backbone.reset_parameters()  # MAE's initialisation (init_weights would also log it)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({'state_dict': start}, tmp_path / 'start.pth')
    work = tmp_path / 'work'
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
         str(ROOT / 'tools' / 'train.py'), str(DATA / 'tiny_mae_pretrain.py'), '--launcher', 'pytorch',
         '--work-dir', str(work), '--cfg-options', f'data_root={image_folder}', f'load_from={tmp_path / "start.pth"}'])
    rank0, rank1 = ([float(x) for x in (work / f'losses_rank{r}.txt').read_text().split()] for r in (0, 1))
    assert len(rank0) == len(rank1) == 2 and all(np.isfinite(rank0 + rank1)) and rank0 != rank1
    end = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=True)['state_dict']
    assert end.keys() == start.keys()
    for k in ('backbone.pos_embed', 'neck.decoder_pos_embed'):
        assert torch.equal(end[k], start[k]), k
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith('backbone.')]
    assert len(trainable) == 3 + 2 * 12 + 2  # patch embed, cls token; 2 blocks; final norm
    for k in trainable:
        assert not torch.equal(end[k], start[k]), k


def test_recipe_config_states_the_published_settings():
    """configs/mae/mae_vit-b16_400e_imagenet.py: ViT-B/16 encoder (our
    MAEPretrainViT), 75% masking, 8x512 decoder, normalised-pixel L2, AdamW
    1.5e-4 x 4096/256 with betas (0.9, 0.95), 40 warm-up + cosine to 400
    epochs, unlabelled images."""
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.default_scope == 'mmpretrain' and cfg.model.type == 'MAE'
    assert cfg.model.backbone == dict(type='densekit.MAEPretrainViT', arch='base', img_size=224, mask_ratio=0.75)
    assert (cfg.model.neck.decoder_embed_dim, cfg.model.neck.decoder_depth, cfg.model.neck.num_patches) == \
        (512, 8, 196)
    assert cfg.model.head.norm_pix and cfg.model.head.loss.criterion == 'L2'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95),
                                               weight_decay=0.05)
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 4096
    assert [s.end for s in cfg.param_scheduler] == [40, 400] and cfg.train_cfg.max_epochs == 400
    assert cfg.train_dataloader.dataset.with_label is False


def test_decoder_of_another_width_is_one_line_naming_the_key(capsys, image_folder, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))  # the config imports testing_hooks
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(DATA / 'tiny_mae_pretrain.py'), '--work-dir', str(tmp_path / 'w'),
                 '--cfg-options', f'data_root={image_folder}', 'model.neck.embed_dim=48')
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ('train: error: ValueError: model.neck.embed_dim=48 does not match the backbone '
                      '(MAEPretrainViT, out_indices=(1,)), which returns channels [32]: set model.neck.embed_dim=32 '
                      'in the config')


def test_mask_ratio_outside_0_1_from_the_command_line(capsys, image_folder, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    with pytest.raises(SystemExit):
        run_main(capsys, 'train', str(DATA / 'tiny_mae_pretrain.py'), '--work-dir', str(tmp_path / 'w'),
                 '--cfg-options', f'data_root={image_folder}', 'model.backbone.mask_ratio=1.5')
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith('train: error: ValueError: ')
    assert err[0].endswith('model.backbone.mask_ratio=1.5 must lie in (0, 1): the fraction of patches masked '
                           'in pretraining (MAE uses 0.75)')
