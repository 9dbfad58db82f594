//go:build amd64 && !purego

#include "textflag.h"

// func sumAVX2(b []byte) uint64
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	// Y15: 0x00000000ffffffff in every 64-bit lane.
	VPCMPEQD Y15, Y15, Y15
	VPSRLQ   $32, Y15, Y15

loop:
	CMPQ CX, $64
	JB   done
	VMOVDQU (SI), Y4
	VMOVDQU 32(SI), Y5
	VPAND   Y15, Y4, Y6 // even words
	VPSRLQ  $32, Y4, Y4 // odd words
	VPAND   Y15, Y5, Y7
	VPSRLQ  $32, Y5, Y5
	VPADDQ  Y6, Y0, Y0
	VPADDQ  Y4, Y1, Y1
	VPADDQ  Y7, Y2, Y2
	VPADDQ  Y5, Y3, Y3
	ADDQ    $64, SI
	SUBQ    $64, CX
	JMP     loop

done:
	VPADDQ       Y1, Y0, Y0
	VPADDQ       Y3, Y2, Y2
	VPADDQ       Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDQ       X1, X0, X0
	VMOVQ        X0, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET
