// Workgroup-wide reductions over 256 invocations (prepended to kernels that reduce a row).
// Every invocation of the workgroup must call them (they contain barriers), and each returns
// the result to every invocation.

var<workgroup> reduce_buf: array<f32, 256>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    reduce_buf[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            reduce_buf[lid] = reduce_buf[lid] + reduce_buf[lid + s];
        }
        workgroupBarrier();
    }
    let r = reduce_buf[0];
    workgroupBarrier();
    return r;
}

fn workgroup_max(lid: u32, v: f32) -> f32 {
    reduce_buf[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            reduce_buf[lid] = max(reduce_buf[lid], reduce_buf[lid + s]);
        }
        workgroupBarrier();
    }
    let r = reduce_buf[0];
    workgroupBarrier();
    return r;
}
