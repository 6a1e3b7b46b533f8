"""Test-only replica of mmpose 0.x test-time AE post-processing (the parity oracle for hrnet/grouping.py).

Follows mmpose v0.29 (`models/detectors/associative_embedding.py::forward_test`,
`core/evaluation/bottom_up_eval.py`, `core/post_processing/group.py`, `post_transforms.py`) as
described in docs/pipeline.md ("Flip test and resize" to "Back to image pixels"), with the same
torch ops, the same numpy dtypes and `munkres.Munkres` for the assignment. It is deliberately as
slow as the original (refine converts the maps per person and scans all 17 joints): do not
optimise it, it is the thing we compare to.
"""

import numpy as np
import torch
import torch.nn.functional as F
from munkres import Munkres

FLIP_INDEX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
STRIDE = 4

TEST_CFG = dict(num_joints=17, max_num_people=30, detection_threshold=0.1, tag_threshold=1.0,
                use_detection_val=True, ignore_too_much=False, nms_kernel=5, nms_padding=2,
                tag_per_joint=True, adjust=True, refine=True)


def _resize(maps, size):
    return F.interpolate(maps, size=size, mode='bilinear', align_corners=False)


def _resize_average(maps, size):
    # mmpose accumulates into an int 0 and divides by the number of stages (1 here).
    avg = 0
    for m in maps:
        avg += _resize(m, size) if tuple(m.shape[2:]) != size else m
    avg /= len(maps)
    return [avg]


def _flip_feature_maps(maps, flip_index):
    return [torch.flip(m, [3])[:, flip_index, :, :] for m in maps]


def aggregate(output, flip_test, num_joints):
    """Network output [N,2K,h,w] -> heatmaps [1,K,H,W], tags [1,K,H,W,L] at input size."""
    out = torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32))
    size = (out.shape[2] * STRIDE, out.shape[3] * STRIDE)
    heatmaps, tags = [out[0:1, :num_joints]], [out[0:1, num_joints:]]
    # aggregate_stage_flip(aggregate_stage='average'/'concat', aggregate_flip='average'/'concat')
    heat_orig = _resize_average(heatmaps, size)
    tag_orig = [_resize(t, size) for t in tags]
    if flip_test:
        heat_flip = _resize_average(_flip_feature_maps([out[1:2, :num_joints]], FLIP_INDEX), size)
        tag_flip = [_resize(t, size) for t in _flip_feature_maps([out[1:2, num_joints:]], FLIP_INDEX)]
        heat_list = [(o + f) / 2.0 for o, f in zip(heat_orig, heat_flip)]
        tag_list = tag_orig + tag_flip
    else:
        heat_list, tag_list = heat_orig, tag_orig
    # aggregate_scale: 'average' for heatmaps, 'unsqueeze_concat' for tags (one scale)
    aggregated_heatmaps = _resize_average(heat_list, size)[0]
    aggregated_tags = torch.cat([torch.unsqueeze(t, dim=4) for t in tag_list], dim=4)
    return aggregated_heatmaps, aggregated_tags


class _Params:
    def __init__(self, cfg):
        self.num_joints = cfg['num_joints']
        self.max_num_people = cfg['max_num_people']
        self.detection_threshold = cfg['detection_threshold']
        self.tag_threshold = cfg['tag_threshold']
        self.use_detection_val = cfg['use_detection_val']
        self.ignore_too_much = cfg['ignore_too_much']
        if self.num_joints == 17:
            self.joint_order = [i - 1 for i in [1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14, 15, 16, 17]]
        else:
            self.joint_order = list(np.arange(self.num_joints))


def _match_by_tag(tag_k, loc_k, val_k, params):
    """match_by_tag for one image, written from the reference description (docs/pipeline.md,
    "Grouping"), one bullet at a time: tag_k [K,30,L], loc_k [K,30,2] int, val_k [K,30]."""
    num_joints, tag_dims = params.num_joints, tag_k.shape[2]
    people = {}  # founding tag0 -> [K, 3+L] float32 rows; insertion-ordered, like mmpose's dict
    tag_lists = {}  # founding tag0 -> the tag vectors collected for that person
    for i, joint in enumerate(params.joint_order):
        # candidates: rows (x, y, val, tag...) as float64, those with val above the threshold
        rows = np.concatenate((loc_k[joint], val_k[joint][:, None], tag_k[joint]), axis=1)
        rows = rows[rows[:, 2] > params.detection_threshold]
        if len(rows) == 0:
            continue
        cand_tags = rows[:, 3:].astype(np.float32)  # (the float32 tags, as gathered)

        def found(row, tag):
            # a new person keyed by its float tag0 (a person with an equal key takes the joint and
            # restarts its tag list: dict assignment)
            key = tag[0]
            people.setdefault(key, np.zeros((num_joints, 3 + tag_dims), np.float32))[joint] = row
            tag_lists[key] = [tag]

        if i == 0 or not people:
            for row, tag in zip(rows, cand_tags):
                found(row, tag)
            continue
        keys = list(people)  # every person found so far ...
        if params.ignore_too_much:  # ... unless told to ignore the ones past max_num_people
            keys = keys[:params.max_num_people]
            if len(keys) == params.max_num_people:
                continue  # and then the joint is skipped entirely
        person_tags = np.array([np.mean(tag_lists[k], axis=0) for k in keys])
        dist = np.linalg.norm(rows[:, None, 3:] - person_tags[None, :, :], ord=2, axis=2)
        cost = np.round(dist) * 100 - rows[:, 2:3] if params.use_detection_val else np.copy(dist)
        n_cand, n_person = dist.shape
        if n_cand > n_person:  # extra columns cost 1e10
            cost = np.concatenate((cost, np.full((n_cand, n_cand - n_person), 1e10, np.float32)), axis=1)
        for row, col in np.array(Munkres().compute(cost)).astype(int):
            if row < n_cand and col < n_person and dist[row, col] < params.tag_threshold:
                people[keys[col]][joint] = rows[row]
                tag_lists[keys[col]].append(cand_tags[row])
            else:
                found(rows[row], cand_tags[row])
    return np.array(list(people.values())).astype(np.float32)


class HeatmapParser:
    def __init__(self, cfg):
        self.params = _Params(cfg)
        self.tag_per_joint = cfg['tag_per_joint']
        self.pool = torch.nn.MaxPool2d(cfg['nms_kernel'], 1, cfg['nms_padding'])

    def nms(self, heatmaps):
        maxm = self.pool(heatmaps)
        maxm = torch.eq(maxm, heatmaps).float()
        return heatmaps * maxm

    def top_k(self, heatmaps, tags):
        heatmaps = self.nms(heatmaps)
        N, K, H, W = heatmaps.size()
        heatmaps = heatmaps.view(N, K, -1)
        val_k, ind = heatmaps.topk(self.params.max_num_people, dim=2)
        tags = tags.view(tags.size(0), tags.size(1), W * H, -1)
        tag_k = torch.stack([torch.gather(tags[..., i], 2, ind) for i in range(tags.size(3))], dim=3)
        x = ind % W
        y = ind // W
        ind_k = torch.stack((x, y), dim=3)
        return {'tag_k': tag_k.cpu().numpy(), 'loc_k': ind_k.cpu().numpy(), 'val_k': val_k.cpu().numpy()}

    def match(self, tag_k, loc_k, val_k):
        return [_match_by_tag(t, l, v, self.params) for t, l, v in zip(tag_k, loc_k, val_k)]

    @staticmethod
    def adjust(ans, heatmaps):
        _, _, H, W = heatmaps.shape
        for batch_id, people in enumerate(ans):
            for people_id, people_i in enumerate(people):
                for joint_id, joint in enumerate(people_i):
                    if joint[2] > 0:
                        x, y = joint[0:2]
                        xx, yy = int(x), int(y)
                        tmp = heatmaps[batch_id][joint_id]
                        if tmp[min(H - 1, yy + 1), xx] > tmp[max(0, yy - 1), xx]:
                            y += 0.25
                        else:
                            y -= 0.25
                        if tmp[yy, min(W - 1, xx + 1)] > tmp[yy, max(0, xx - 1)]:
                            x += 0.25
                        else:
                            x -= 0.25
                        ans[batch_id][people_id, joint_id, 0:2] = (x + 0.5, y + 0.5)
        return ans

    @staticmethod
    def refine(heatmap, tag, keypoints):
        K, H, W = heatmap.shape
        if len(tag.shape) == 3:
            tag = tag[..., None]
        tags = []
        for i in range(K):
            if keypoints[i, 2] > 0:
                x, y = keypoints[i][:2].astype(int)
                x = max(0, min(x, W - 1))
                y = max(0, min(y, H - 1))
                tags.append(tag[i, y, x])
        prev_tag = np.mean(tags, axis=0)
        ans = []
        for _heatmap, _tag in zip(heatmap, tag):
            distance_tag = (((_tag - prev_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5)
            norm_heatmap = _heatmap - np.round(distance_tag)
            y, x = np.unravel_index(np.argmax(norm_heatmap), _heatmap.shape)
            xx = x.copy()
            yy = y.copy()
            val = _heatmap[y, x]
            x += 0.5
            y += 0.5
            if _heatmap[yy, min(W - 1, xx + 1)] > _heatmap[yy, max(0, xx - 1)]:
                x += 0.25
            else:
                x -= 0.25
            if _heatmap[min(H - 1, yy + 1), xx] > _heatmap[max(0, yy - 1), xx]:
                y += 0.25
            else:
                y -= 0.25
            ans.append((x, y, val))
        ans = np.array(ans)
        for i in range(K):
            if ans[i, 2] > 0 and keypoints[i, 2] == 0:
                keypoints[i, :3] = ans[i, :3]
        return keypoints

    def parse(self, heatmaps, tags, adjust=True, refine=True):
        ans = self.match(**self.top_k(heatmaps, tags))
        if adjust:
            ans = self.adjust(ans, heatmaps)
        scores = [i[:, 2].mean() for i in ans[0]]
        if refine:
            ans = ans[0]
            for i in range(len(ans)):
                heatmap_numpy = heatmaps[0].cpu().numpy()
                tag_numpy = tags[0].cpu().numpy()
                ans[i] = self.refine(heatmap_numpy, tag_numpy, ans[i])
            ans = [ans]
        return ans, scores


def transform_preds(coords, center, scale, output_size):
    scale = scale * 200.0
    scale_x = scale[0] / output_size[0]
    scale_y = scale[1] / output_size[1]
    target_coords = coords.copy()
    target_coords[:, 0] = coords[:, 0] * scale_x + center[0] - scale[0] * 0.5
    target_coords[:, 1] = coords[:, 1] * scale_y + center[1] - scale[1] * 0.5
    return target_coords


def get_group_preds(grouped_joints, center, scale, heatmap_size):
    if len(grouped_joints) == 0:
        return []
    return [transform_preds(person, center, scale, heatmap_size) for person in grouped_joints[0]]


def reference_group(output, center, scale, flip_test=True, **test_cfg):
    """mmpose's test-time grouping of one image's raw network output(s).

    output: [N,2K,h,w] float32 with N=2 (original, mirrored input; the second still mirrored) when
    flip_test else N=1. center, scale: the preprocessing meta (scale in pixel_std=200 units).
    Returns (keypoints [P,K,3] float32 as (x, y, val) in image pixels, scores [P] float32).
    """
    cfg = dict(TEST_CFG, **test_cfg)
    cfg['nms_padding'] = (cfg['nms_kernel'] - 1) // 2
    with torch.no_grad():
        heatmaps, tags = aggregate(output, flip_test, cfg['num_joints'])
        parser = HeatmapParser(cfg)
        grouped, scores = parser.parse(heatmaps, tags, cfg['adjust'], cfg['refine'])
    preds = get_group_preds(grouped, np.asarray(center), np.asarray(scale, dtype=np.float64),
                            [heatmaps.size(3), heatmaps.size(2)])
    k = cfg['num_joints']
    keypoints = np.array([p[:, :3] for p in preds], dtype=np.float32).reshape(-1, k, 3)
    return keypoints, np.array(scores, dtype=np.float32).reshape(-1)
